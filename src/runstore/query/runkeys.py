"""Run ids as one array of 12-byte keys, for joins without a Python object per run.

A run id is the hex spelling of its 12-byte storage key, and the tables list
runs in key order. Kept as strings, a million ids cost ~0.6 s to unpack from a
snapshot and a dict of 1 M entries to join the sequence rows onto the run rows.
Kept as one ``uint8`` array (12 bytes per run) they map straight from the
snapshot file, compare with one ``memcmp`` and join with one ``searchsorted``
over a NumPy ``'S12'`` view.

Why ``'S12'`` only as a *view*: NumPy compares and sorts ``'S12'`` values
byte-wise over the full width (trailing zero bytes included, since every value
is 12 bytes), which is the key order, but converting one to Python ``bytes``
strips trailing zero bytes. So ids are never turned into ``bytes`` through that
dtype; they are encoded from and decoded to hex text directly.
"""

from __future__ import annotations

import numpy as np

KEY_BYTES = 12


def encode_ids(ids: list) -> np.ndarray:
    """The ids (24 lowercase hex digits each) as one flat ``uint8`` array; ValueError
    when one is not such an id (a standalone table of foreign ids: joined by dict)."""
    text = "".join(ids)
    if len(text) != 2 * KEY_BYTES * len(ids) or text != text.lower():
        raise ValueError("not a list of run ids")
    raw = bytes.fromhex(text)  # ValueError on a non-hex digit
    if len(raw) != KEY_BYTES * len(ids):  # fromhex skips spaces
        raise ValueError("not a list of run ids")
    return np.frombuffer(raw, dtype=np.uint8)


def decode_ids(raw: np.ndarray) -> list[str]:
    """The hex ids of a flat ``uint8`` array of 12-byte keys (exact: zero bytes kept)."""
    text = raw.tobytes().hex()
    step = 2 * KEY_BYTES
    return [text[i : i + step] for i in range(0, len(text), step)]


def as_keys(raw: np.ndarray) -> np.ndarray:
    """A comparable, sortable ``'S12'`` view of a flat ``uint8`` key array (no copy)."""
    return np.ascontiguousarray(raw).view(f"S{KEY_BYTES}")


def strictly_sorted(keys: np.ndarray) -> bool:
    return len(keys) < 2 or bool((keys[1:] > keys[:-1]).all())


def rows_of(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """For every key of ``keys`` ('S12'), its row in ``table`` ('S12'), -1 when absent.
    ``table`` is normally in key order (one ``searchsorted``); otherwise it is sorted
    first. A key listed twice in ``table`` maps to its last row (as a dict built by
    ``{id: row for row, id in enumerate(ids)}`` would)."""
    if not len(table) or not len(keys):
        return np.full(len(keys), -1, dtype=np.int64)
    order = None if strictly_sorted(table) else np.argsort(table, kind="stable")
    pos = np.searchsorted(table, keys, side="right", sorter=order) - 1
    ok = pos >= 0
    pos = np.maximum(pos, 0)
    rows = pos if order is None else order[pos]
    ok &= table[rows] == keys
    return np.where(ok, rows, -1).astype(np.int64, copy=False)
