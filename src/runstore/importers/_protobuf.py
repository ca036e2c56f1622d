"""A minimal protocol-buffers wire decoder: just enough for TensorBoard's Event,
Summary, HistogramProto, TensorProto and the hparams plugin's messages.

Why not the ``tensorboard`` package's generated classes: they pull in protobuf,
grpcio and friends for a handful of fields, and decoding one Python object per
scalar is what makes TensorBoard's own loader slow. The wire format is small
(varints, fixed 32/64-bit values, length-delimited fields), and the field numbers
used below come from TensorBoard's ``.proto`` files (cited beside each reader).
"""

from __future__ import annotations

import struct
from typing import Iterator

from ..errors import RunstoreError

_F64 = struct.Struct("<d")
_F32 = struct.Struct("<f")


class DecodeError(RunstoreError, ValueError):
    """Bytes that are not the protocol buffer they should be."""


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        try:
            b = buf[pos]
        except IndexError:
            raise DecodeError("a varint runs past the end of its message") from None
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("a varint is longer than 10 bytes")


def signed64(value: int) -> int:
    """A varint read as int64 (negative numbers are sent as 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) for each field of the message in ``buf[start:end]``.

    Varints come as ints, fixed64/fixed32 as their raw 8/4 bytes, and
    length-delimited fields as a ``(start, end)`` pair into ``buf`` (not copied)."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value = buf[pos:pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = varint(buf, pos)
            value = (pos, pos + length)
            pos += length
        elif wire == 5:
            value = buf[pos:pos + 4]
            pos += 4
        else:  # groups (3, 4) are not used by any message read here
            raise DecodeError(f"unsupported wire type {wire} for field {number}")
        if pos > end:
            raise DecodeError(f"field {number} runs past the end of its message")
        yield number, wire, value


def f64(raw: object) -> float:
    return _F64.unpack(raw)[0]  # type: ignore[arg-type]


def f32(raw: object) -> float:
    return _F32.unpack(raw)[0]  # type: ignore[arg-type]


def text(buf: bytes, span: object) -> str:
    a, b = span  # type: ignore[misc]
    return bytes(buf[a:b]).decode("utf-8", "replace")


def packed_varints(buf: bytes, span: object) -> list[int]:
    a, b = span  # type: ignore[misc]
    out = []
    while a < b:
        v, a = varint(buf, a)
        out.append(v)
    return out


def struct_value(buf: bytes, start: int, end: int) -> object:
    """``google.protobuf.Value`` as a Python value (struct.proto: 1 null, 2 number,
    3 string, 4 bool, 5 struct, 6 list)."""
    for number, wire, value in fields(buf, start, end):
        if number == 1:
            return None
        if number == 2 and wire == 1:
            return f64(value)
        if number == 3 and wire == 2:
            return text(buf, value)
        if number == 4 and wire == 0:
            return bool(value)
        if number == 5 and wire == 2:
            return {k: v for k, v in _struct_entries(buf, *value)}  # type: ignore[misc]
        if number == 6 and wire == 2:
            return [struct_value(buf, *span) for n, w, span in fields(buf, *value) if n == 1 and w == 2]  # type: ignore[misc]
    return None


def _struct_entries(buf: bytes, start: int, end: int) -> Iterator[tuple[str, object]]:
    # Struct { map<string, Value> fields = 1; } -- a map entry is {1: key, 2: value}
    for number, wire, span in fields(buf, start, end):
        if number == 1 and wire == 2:
            yield map_entry(buf, *span)  # type: ignore[misc]


def map_entry(buf: bytes, start: int, end: int) -> tuple[str, object]:
    key, value = "", None
    for number, wire, span in fields(buf, start, end):
        if number == 1 and wire == 2:
            key = text(buf, span)
        elif number == 2 and wire == 2:
            value = struct_value(buf, *span)  # type: ignore[misc]
    return key, value
