"""Private storage layer: the LMDB environment, keys, codecs and numeric blocks.

The bottom layer: it imports nothing of runstore but ``errors``. The tracking
layer (``runstore.tracking``) writes and reads through it; the query layer reads
the records it scans (docs/architecture.md).
"""
