"""Read one TensorBoard event file: TFRecord framing, then Event protocol buffers.

Framing (TFRecord): ``uint64 length, uint32 masked_crc32c(length), data,
uint32 masked_crc32c(data)``, little-endian. A writer killed mid-record leaves
a truncated last record; it is skipped and reported, never guessed at.

Speed: a training job writes one Event per scalar, so a 10 M-point log is 10 M
small records. Decoding each into Python objects (what TensorBoard's loader
does) costs microseconds apiece. Here records of one length are decoded
together with NumPy: the first record of a group is parsed field by field,
which gives the byte positions of its wall time, step and value; every other
record whose remaining bytes (field keys, lengths, tag, metadata) are identical
and whose step varint has the same width parses *exactly* the same way, so
its three numbers are read straight from those positions. Records that do not
match fall back to the field-by-field decoder. Nothing is sampled: every record
is decoded (TensorBoard's EventAccumulator keeps 10,000 scalars per tag).

Field numbers (tensorboard/compat/proto): Event{1 wall_time, 2 step, 3
file_version, 5 summary}; Summary{1 value}; Summary.Value{1 tag, 2
simple_value, 4 image, 5 histo, 8 tensor, 9 metadata}; SummaryMetadata{1
plugin_data{1 plugin_name, 2 content}}; TensorProto{1 dtype, 2 tensor_shape,
4 tensor_content, 5 float_val, 6 double_val, 7 int_val, 8 string_val, 10
int64_val, 11 bool_val}; HistogramProto{1 min, 2 max, 3 num, 4 sum, 5
sum_squares, 6 bucket_limit, 7 bucket}; Summary.Image{1 height, 2 width, 3
colorspace, 4 encoded_image_string}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _protobuf as pb
from ._protobuf import DecodeError
from ._tfrecord import frame, rows
# DataType enum (types.proto): numbers we read as scalars -> NumPy dtype
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2",
           19: "<f2", 22: "<u4", 23: "<u8"}
_TEMPLATE_TRIES = 16  # templates tried per record length before the rest is decoded one by one


@dataclass
class EventFile:
    """What one event file holds, decoded. Scalars per tag are NumPy columns in
    file order; the rest are lists of ``(step, wall_time, payload)``."""

    path: Path
    scalars: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    histograms: dict[str, list] = field(default_factory=dict)
    images: dict[str, list] = field(default_factory=dict)
    texts: dict[str, list] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    hparams_end: tuple[int, float] | None = None  # (status, end time) from session_end_info
    other: dict[str, int] = field(default_factory=dict)  # plugin -> values skipped
    first_wall: float | None = None
    last_wall: float | None = None
    records: int = 0
    problems: list[str] = field(default_factory=list)


class _Reader:
    """Decodes the records of one file into an EventFile."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.data = data
        self.out = EventFile(path)
        self.plugins: dict[str, str] = {}  # tag -> plugin name (metadata may come only once)
        # tag -> lists of (record index, step, wall, value) chunks, arrays or scalars
        self.chunks: dict[str, list] = {}
        self.tensor_tags: set[str] = set()  # scalar points that came from tensors

    # -- the field-by-field decoder -------------------------------------------------
    def event(self, index: int, start: int, end: int, layout: list | None = None) -> None:
        """Decode one Event; with ``layout`` (a list), also put there where its
        numbers are when it is a plain one-scalar event: (wall position, step
        position, step width, tag, value position, value dtype), relative to ``start``."""
        buf = self.data
        wall = 0.0
        step = 0
        summary = None
        for number, wire, value in pb.fields(buf, start, end):
            if number == 1 and wire == 1:
                wall = pb.f64(value)
            elif number == 2 and wire == 0:
                step = pb.signed64(value)
            elif number == 5 and wire == 2:
                summary = value
        out = self.out
        if out.first_wall is None or wall < out.first_wall:
            out.first_wall = wall
        if out.last_wall is None or wall > out.last_wall:
            out.last_wall = wall
        if summary is None:
            return
        values = [span for n, w, span in pb.fields(buf, *summary) if n == 1 and w == 2]
        for span in values:
            found = self.value(index, step, wall, *span)
            if layout is not None and len(values) == 1 and found is not None:
                wall_pos, step_pos, step_len = _event_positions(buf, start, end)
                if wall_pos >= 0 and step_pos >= 0:
                    layout.extend((wall_pos, step_pos, step_len, found[0], found[1] - start, found[2]))

    def value(self, index: int, step: int, wall: float, start: int, end: int):
        """Decode one Summary.Value; return (tag, value position, dtype) for a scalar."""
        buf = self.data
        tag = ""
        simple = tensor = histo = image = plugin = content = None
        for number, wire, value in pb.fields(buf, start, end):
            if number == 1 and wire == 2:
                tag = pb.text(buf, value)
            elif number == 2 and wire == 5:
                simple = pb.f32(value)
            elif number == 8 and wire == 2:
                tensor = value
            elif number == 5 and wire == 2:
                histo = value
            elif number == 4 and wire == 2:
                image = value
            elif number == 9 and wire == 2:
                plugin, content = _plugin(buf, *value)
        if plugin:
            self.plugins[tag] = plugin
        plugin = self.plugins.get(tag)
        if simple is not None:
            self._point(tag, index, step, wall, simple)
            pos = _field_payload(buf, start, end, 2, 5)
            return (tag, pos, "<f4") if pos >= 0 else None
        if histo is not None:
            self.out.histograms.setdefault(tag, []).append((step, wall, _histogram(buf, *histo)))
            return None
        if image is not None:
            self.out.images.setdefault(tag, []).append((step, wall, _image(buf, *image)))
            return None
        if plugin == "hparams":
            if content is not None:
                self._hparams(buf, *content)
            return None
        if tensor is None:
            return None
        dtype, shape, payload, where = _tensor(buf, *tensor)
        if plugin in (None, "scalars") and dtype in _DTYPES and int(np.prod(shape or [1])) == 1:
            values = _tensor_values(buf, dtype, payload)
            if len(values) == 1:
                self.tensor_tags.add(tag)
                self._point(tag, index, step, wall, float(values[0]))
                return (tag, where[0], where[1]) if where is not None else None
            return None
        if plugin == "histograms" and dtype in (1, 2) and len(shape) == 2 and shape[1] == 3:
            edges = _tensor_values(buf, dtype, payload).astype(np.float64).reshape(shape)
            self.out.histograms.setdefault(tag, []).append((step, wall, {"buckets": edges}))
        elif plugin == "text" and dtype == 7:
            strings = [pb.text(buf, s) for s in payload]
            self.out.texts.setdefault(tag, []).append((step, wall, strings[0] if len(strings) == 1 else strings))
        elif plugin == "images" and dtype == 7 and len(payload) >= 3:
            w, h = (pb.text(buf, payload[0]), pb.text(buf, payload[1]))
            for s in payload[2:]:
                a, b = s
                self.out.images.setdefault(tag, []).append(
                    (step, wall, {"width": int(w), "height": int(h), "encoded": bytes(buf[a:b])}))
        else:
            name = plugin or "tensor"
            self.out.other[name] = self.out.other.get(name, 0) + 1
        return None

    def _point(self, tag: str, index: int, step: int, wall: float, value: float) -> None:
        self.chunks.setdefault(tag, []).append((index, step, wall, value))

    def _hparams(self, buf: bytes, start: int, end: int) -> None:
        # HParamsPluginData{1 version, 2 experiment, 3 session_start_info, 4 session_end_info}
        for number, wire, span in pb.fields(buf, start, end):
            if number == 3 and wire == 2:
                # SessionStartInfo{1 map<string, Value> hparams, ..., 5 start_time_secs}
                for n, w, entry in pb.fields(buf, *span):
                    if n == 1 and w == 2:
                        key, value = pb.map_entry(buf, *entry)
                        self.out.hparams[key] = value
            elif number == 4 and wire == 2:
                status, end_time = 0, 0.0
                for n, w, v in pb.fields(buf, *span):
                    if n == 1 and w == 0:
                        status = v
                    elif n == 2 and w == 1:
                        end_time = pb.f64(v)
                self.out.hparams_end = (status, end_time)

    # -- the columnar fast path --------------------------------------------------------
    def records(self, offs: np.ndarray, lens: np.ndarray, verify: bool) -> None:
        if not len(offs):
            return
        u8 = np.frombuffer(self.data, np.uint8)
        order = np.argsort(lens, kind="stable")
        bounds = np.flatnonzero(np.diff(lens[order])) + 1
        for group in np.split(order, bounds):
            length = int(lens[group[0]])
            matrix, keep = rows(self.data, u8, offs[group], length, self.out.path, verify, self.out.problems)
            if not keep.all():
                group = group[keep]
                matrix = matrix[keep] if matrix is not None else None
            self.out.records += len(group)
            self._group(group, offs, length, matrix)

    def _group(self, group: np.ndarray, offs: np.ndarray, length: int, matrix: np.ndarray | None) -> None:
        """Decode the records ``group`` (indices into ``offs``), all ``length`` bytes
        long, whose bytes are the rows of ``matrix`` (None: one by one)."""
        if matrix is None or len(group) < 8:  # not worth a matrix
            for i in group:
                self.event(int(i), int(offs[i]), int(offs[i]) + length)
            return
        rest = np.arange(len(group))
        for _ in range(_TEMPLATE_TRIES):
            if not len(rest):
                return
            first = int(group[rest[0]])
            layout: list = []
            self.event(first, int(offs[first]), int(offs[first]) + length, layout)
            rest = rest[1:]
            if layout and len(rest):
                rest = self._like(layout, matrix, group, offs, rest, length)
        for j in rest:  # records of shapes too varied for templates
            i = int(group[j])
            self.event(i, int(offs[i]), int(offs[i]) + length)

    def _like(self, layout: list, matrix: np.ndarray, group: np.ndarray, offs: np.ndarray, rest: np.ndarray,
              length: int) -> np.ndarray:
        """Decode every record of ``rest`` laid out like the template; return the others.

        Rows are grouped by their bytes outside the wall time, step and value
        (tag, field keys, lengths, metadata); one row of each such class is
        decoded field by field: if its numbers sit where the template's do, the
        whole class parses the same way and is read column-wise."""
        wall_pos, step_pos, step_len, _tag, val_pos, dtype = layout
        width = np.dtype(dtype).itemsize
        fixed = np.ones(length, bool)
        fixed[wall_pos:wall_pos + 8] = False
        fixed[step_pos:step_pos + step_len] = False
        fixed[val_pos:val_pos + width] = False
        sub = matrix[rest]
        steps_b = sub[:, step_pos:step_pos + step_len]
        shaped = steps_b[:, -1] < 0x80
        if step_len > 1:
            shaped &= (steps_b[:, :-1] >= 0x80).all(axis=1)
        keys = np.asfortranarray(sub[:, fixed])  # byte columns contiguous for the hash loop
        # A hash of those bytes picks the classes (np.unique on uint64 is much
        # faster than on raw rows); members are then compared byte for byte.
        digest = np.zeros(len(sub), np.uint64)
        prime = np.uint64(1099511628211)
        for j in range(keys.shape[1]):
            digest = digest * prime + keys[:, j]
        _, inverse = np.unique(digest, return_inverse=True)
        inverse = inverse.ravel()
        done = np.zeros(len(rest), bool)
        for cls in range(int(inverse.max()) + 1):
            members = (inverse == cls) & shaped
            where = np.flatnonzero(members)
            if not len(where):
                continue
            row = int(where[0])
            members[where] = (keys[where] == keys[row]).all(axis=1)
            i = int(group[rest[row]])
            mine: list = []
            self.event(i, int(offs[i]), int(offs[i]) + length, mine)
            done[row] = True
            if not mine or mine[:3] != layout[:3] or mine[4:] != layout[4:]:
                continue  # another layout: left for the next template
            members[row] = False
            hit = sub[members]
            done |= members
            walls = np.ascontiguousarray(hit[:, wall_pos:wall_pos + 8]).view("<f8").ravel()
            shifts = (7 * np.arange(step_len)).astype(np.uint64)
            steps = ((hit[:, step_pos:step_pos + step_len] & 0x7F).astype(np.uint64) << shifts).sum(
                axis=1, dtype=np.uint64).view(np.int64)
            vals = np.ascontiguousarray(hit[:, val_pos:val_pos + width]).view(dtype).ravel().astype(np.float64)
            self.chunks.setdefault(mine[3], []).append((group[rest[members]], steps, walls, vals))
            out = self.out
            lo, hi = float(walls.min()), float(walls.max())
            out.first_wall = lo if out.first_wall is None else min(out.first_wall, lo)
            out.last_wall = hi if out.last_wall is None else max(out.last_wall, hi)
        return rest[~done]

    def finish(self) -> EventFile:
        out = self.out
        for tag, chunks in self.chunks.items():
            if tag in self.tensor_tags and self.plugins.get(tag) not in (None, "scalars"):
                continue
            idx = np.concatenate([np.atleast_1d(np.asarray(c[0], np.int64)) for c in chunks])
            steps = np.concatenate([np.atleast_1d(np.asarray(c[1], np.int64)) for c in chunks])
            walls = np.concatenate([np.atleast_1d(np.asarray(c[2], np.float64)) for c in chunks])
            vals = np.concatenate([np.atleast_1d(np.asarray(c[3], np.float64)) for c in chunks])
            if len(chunks) > 1:
                order = np.argsort(idx, kind="stable")  # back to file order
                steps, walls, vals = steps[order], walls[order], vals[order]
            out.scalars[tag] = (steps, walls, vals)
        return out


def read(path: Path, verify: bool = True) -> EventFile:
    """Decode the event file at ``path`` (read once, never written); ``verify``
    checks every record's CRC-32C."""
    data = path.read_bytes()
    offs, lens, problems = frame(data, path, verify)
    reader = _Reader(path, data)
    reader.out.problems.extend(problems)
    try:
        reader.records(offs, lens, verify)
    except DecodeError as exc:
        reader.out.problems.append(f"{path}: a record is not a TensorBoard event ({exc}); records after it were kept")
    return reader.finish()


def _event_positions(buf: bytes, start: int, end: int) -> tuple[int, int, int]:
    """Byte positions (relative to ``start``) of the wall time payload and the step varint."""
    wall_pos = step_pos = step_len = -1
    pos = start
    while pos < end:
        key, after = pb.varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, nxt = pb.varint(buf, after)
            if number == 2:
                step_pos, step_len = after - start, nxt - after
        elif wire == 1:
            nxt = after + 8
            if number == 1:
                wall_pos = after - start
        elif wire == 2:
            length, body = pb.varint(buf, after)
            nxt = body + length
        elif wire == 5:
            nxt = after + 4
        else:
            return -1, -1, -1
        pos = nxt
    return wall_pos, step_pos, step_len


def _field_payload(buf: bytes, start: int, end: int, number: int, wire: int) -> int:
    """Absolute position of the payload of field ``number`` in a message, or -1."""
    pos = start
    while pos < end:
        key, after = pb.varint(buf, pos)
        n, w = key >> 3, key & 7
        if n == number and w == wire:
            return after
        if w == 0:
            _, pos = pb.varint(buf, after)
        elif w == 1:
            pos = after + 8
        elif w == 2:
            length, body = pb.varint(buf, after)
            pos = body + length
        elif w == 5:
            pos = after + 4
        else:
            return -1
    return -1


def _plugin(buf: bytes, start: int, end: int) -> tuple[str | None, tuple | None]:
    name = content = None
    for number, wire, span in pb.fields(buf, start, end):
        if number == 1 and wire == 2:
            for n, w, v in pb.fields(buf, *span):
                if n == 1 and w == 2:
                    name = pb.text(buf, v)
                elif n == 2 and w == 2:
                    content = v
    return name, content


def _tensor(buf: bytes, start: int, end: int) -> tuple[int, list[int], Any, tuple | None]:
    """(dtype, shape, payload, (position, dtype) of a lone float32/float64 value or None).

    ``payload`` is (field number, span) of packed values or tensor_content, or a
    list of spans for string_val."""
    dtype = 0
    shape: list[int] = []
    payload: Any = None
    strings: list = []
    for number, wire, value in pb.fields(buf, start, end):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 2 and wire == 2:
            for n, w, dim in pb.fields(buf, *value):
                if n == 2 and w == 2:
                    size = 0
                    for n2, w2, v2 in pb.fields(buf, *dim):
                        if n2 == 1 and w2 == 0:
                            size = pb.signed64(v2)
                    shape.append(size)
        elif number in (4, 5, 6, 7, 10, 11) and wire == 2:
            payload = (number, value)
        elif number == 8 and wire == 2:
            strings.append(value)
    if dtype == 7:
        return dtype, shape, strings, None
    where = None
    if payload is not None:
        number, (a, b) = payload
        if (number == 5 or number == 4 and dtype == 1) and b - a == 4:
            where = (a, "<f4")
        elif (number == 6 or number == 4 and dtype == 2) and b - a == 8:
            where = (a, "<f8")
    return dtype, shape, payload, where


def _tensor_values(buf: bytes, dtype: int, payload: Any) -> np.ndarray:
    if payload is None:
        return np.zeros(0)
    number, (a, b) = payload
    if number == 4:  # tensor_content: raw little-endian values of dtype
        return np.frombuffer(buf[a:b], _DTYPES[dtype])
    if number == 5:
        return np.frombuffer(buf[a:b], "<f4")
    if number == 6:
        return np.frombuffer(buf[a:b], "<f8")
    ints = pb.packed_varints(buf, (a, b))
    return np.array([pb.signed64(v) for v in ints], np.float64)


def _histogram(buf: bytes, start: int, end: int) -> dict:
    out: dict[str, Any] = {"min": 0.0, "max": 0.0, "num": 0.0, "sum": 0.0, "sum_squares": 0.0,
                           "bucket_limit": np.zeros(0), "bucket": np.zeros(0)}
    names = {1: "min", 2: "max", 3: "num", 4: "sum", 5: "sum_squares"}
    for number, wire, value in pb.fields(buf, start, end):
        if number in names and wire == 1:
            out[names[number]] = pb.f64(value)
        elif number in (6, 7) and wire == 2:
            a, b = value
            out["bucket_limit" if number == 6 else "bucket"] = np.frombuffer(buf[a:b], "<f8").copy()
    return out


def _image(buf: bytes, start: int, end: int) -> dict:
    out: dict[str, Any] = {"width": 0, "height": 0, "encoded": b""}
    for number, wire, value in pb.fields(buf, start, end):
        if number == 1 and wire == 0:
            out["height"] = value
        elif number == 2 and wire == 0:
            out["width"] = value
        elif number == 4 and wire == 2:
            a, b = value
            out["encoded"] = bytes(buf[a:b])
    return out
