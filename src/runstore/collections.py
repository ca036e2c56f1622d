"""``from runstore.collections import RunCollection`` (a documented import path).

The collections live in the analysis layer: :mod:`runstore.analysis.collections`.
"""

from .analysis.collections import RunCollection, SequenceCollection

__all__ = ["RunCollection", "SequenceCollection"]
