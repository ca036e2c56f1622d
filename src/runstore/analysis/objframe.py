"""``SequenceCollection.to_arrow()`` over object sequences (images, text, ...).

One row per point: run_id, name, ``context.<key>`` columns, step, epoch,
timestamp, type, then the payload columns of the types in the selection:

- ``data`` (binary): the encoded image (PNG/JPEG), WAV, figure (PNG or plotly
  JSON) or ``.npy`` bytes, exactly as ``seq[i].data`` returns them;
- ``text`` (string): Text points;
- ``counts`` and ``bin_edges`` (list<float64>): Distribution points.

A payload column is null on rows of the other types. A selection that mixes
float and object sequences is refused (see :func:`mixed_error`): the two kinds
have different columns, and one long table with both would be mostly nulls.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidValueError
from ..query import arrow as _arrow

BINARY_TYPES = ("image", "audio", "figure", "array")


def mixed_error(n_float: int, n_objects: int, what: str) -> InvalidValueError:
    return InvalidValueError(
        f"{what}: this selection mixes {n_float} float sequence(s) and {n_objects} object sequence(s) "
        "(images, text, ...), which have different columns; select one kind, e.g. "
        "repo.query_sequences('seq.type == \"float\"') and repo.query_sequences('seq.type != \"float\"')"
    )


def to_arrow(seqs: list, keys: list, types: list[str]) -> Any:
    """The long table of the object sequences ``seqs`` ((run_id, name, context) in ``keys``)."""
    import pyarrow as pa

    from ..query.tables import leaf_paths, walk
    from .seqframe import _context_values, _dictionary

    steps, epochs, times, kinds = [], [], [], []
    data: list = []
    text: list = []
    counts: list = []
    edges: list = []
    per_seq_counts = []
    for seq, typ in zip(seqs, types):
        part = seq[:]  # the tracking layer's public reading API
        items = part.values
        n = len(items)
        per_seq_counts.append(n)
        steps.append(part.steps)
        epochs.append(part.epochs)
        times.append(part.timestamps)
        kinds.extend([typ] * n)
        data.extend([it.data for it in items] if typ in BINARY_TYPES else [None] * n)
        text.extend([it.text for it in items] if typ == "text" else [None] * n)
        if typ == "distribution":
            counts.extend(it.counts for it in items)
            edges.extend(it.bin_edges for it in items)
        else:
            counts.extend([None] * n)
            edges.extend([None] * n)
    seq_index = np.repeat(np.arange(len(seqs), dtype=np.int32), np.array(per_seq_counts, dtype=np.int64))
    ctx_paths = leaf_paths([k[2] for k in keys])
    names = ["run_id", "name"] + ["context." + ".".join(map(str, p)) for p in ctx_paths]
    cols_out = [_dictionary([k[0] for k in keys], pa.string(), seq_index),
                _dictionary([k[1] for k in keys], pa.string(), seq_index)]
    for p in ctx_paths:
        values, typ = _context_values([walk(k[2], p) for k in keys])
        cols_out.append(_dictionary(values, typ, seq_index))

    def cat(parts: list, dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)

    names += ["step", "epoch", "timestamp", "type"]
    cols_out += [_arrow.numeric(cat(steps, np.int64), pa.int64()), _arrow.numeric(cat(epochs, np.float64), pa.float64()),
                 _arrow.numeric(cat(times, np.float64), pa.float64()),
                 _dictionary(types, pa.string(), seq_index)]
    present = set(types)
    if present & set(BINARY_TYPES):
        names.append("data")
        cols_out.append(_arrow.binaries(data))
    if "text" in present:
        names.append("text")
        cols_out.append(_arrow.strings(text))
    if "distribution" in present:
        names += ["counts", "bin_edges"]
        cols_out += [_arrow.float_lists(counts), _arrow.float_lists(edges)]
    return pa.Table.from_arrays(cols_out, names=names)
