"""Private storage layer: the LMDB environment, keys, codecs and numeric blocks.

Nothing outside ``runstore.repo``, ``runstore.run`` and ``runstore.sequence``
imports from here (see DESIGN.md: a layer never reaches around the one below).
"""
