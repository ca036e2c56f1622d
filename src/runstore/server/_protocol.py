"""What client and server say to each other over Arrow Flight.

Every write is an *op* of one writer: a writer is one Run object of one client
process (a random id), and its ops carry sequence numbers 1, 2, 3, ... in the
order the client made them.  The server stores a writer's highest applied
number in the run's record *in the same write transaction* as the op's effect,
so an op sent twice (a retry after a lost connection, a spool drained after a
crash) is recognised and acknowledged without being applied again, and an op is
acknowledged only once it is committed.

* record ops (create, resume, edits, close) travel as ``DoAction("op", msgpack)``;
* points travel as one Arrow record batch per run and flush on a long-lived
  ``DoPut`` stream, the op itself in the batch's app metadata; the server
  answers each batch with one msgpack acknowledgement on the same stream.

Op fields (msgpack map): ``w`` writer, ``n`` number, ``run`` run id, ``sent``
client clock, and any of ``create`` [record, params], ``set`` {field: value},
``tags+`` / ``tags-`` [tag...], ``params`` {key: value} (top-level keys set),
``params-`` [key...], ``seqs`` [[name, context]...] (the sequences the points
batch's ``seq`` column indexes).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import msgpack
import numpy as np
import pyarrow as pa

from ..errors import RepositoryError

VERSION = 1
from . import DEFAULT_PORT, TOKEN_ENV  # noqa: E402,F401
REFUSED = "the server refused the token"

POINTS_SCHEMA = pa.schema([
    ("seq", pa.int32()),      # index into the op's "seqs"
    ("step", pa.int64()),     # null: not given (the previous step + 1, resolved by the server)
    ("value", pa.float64()),
    ("epoch", pa.float64()),  # NaN: no epoch
    ("time", pa.float64()),   # the client's clock (seconds since the epoch)
])

_packer = msgpack.Packer(use_bin_type=True)


def pack(obj: Any) -> bytes:
    return _packer.pack(obj)


def unpack(raw: Any) -> Any:
    return msgpack.unpackb(bytes(raw) if not isinstance(raw, bytes) else raw, raw=False, strict_map_key=False)


class Address:
    """A parsed ``grpc://host:port`` or ``grpc+tls://host:port``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("grpc", "grpc+tls") or not parts.hostname:
            raise RepositoryError(
                f"{url!r} is not a server address; write grpc://HOST:PORT (grpc+tls://HOST:PORT with TLS)"
            )
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise RepositoryError(f"{url!r}: the port must be a number from 1 to 65535") from None
        self.tls = scheme == "grpc+tls"
        self.host = parts.hostname
        self.port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{scheme}://{host}:{port}"
        self.location = f"{'grpc+tls' if self.tls else 'grpc+tcp'}://{host}:{port}"

    @property
    def spool_name(self) -> str:
        """A directory name for this server's spool (no characters a file system dislikes)."""
        return f"{self.host.replace(':', '_')}_{self.port}"

    def __str__(self) -> str:
        return self.url


def default_spool_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "runstore", "spool")


def read_token(token: str | None) -> str | None:
    """``token`` as given, else ``$RUNSTORE_TOKEN``; surrounding whitespace dropped."""
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    token = token.strip() if token else None
    return token or None


# -- Arrow arrays without pandas ----------------------------------------------------------
# pa.array(...), Array.to_numpy() and pa.table(dict) ask pyarrow's pandas shim whether
# their argument is a pandas object, which imports pandas: 1-2 s on the first batch of
# a process that never uses it (runstore.query.arrow says the same for exports). Arrays are
# built from buffers and read back through them instead.
_NUMPY = {"int32": np.int32, "int64": np.int64, "double": np.float64}


def numeric(data: np.ndarray, typ: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A primitive array over ``data`` (copied only if not contiguous); ``valid`` marks non-nulls."""
    data = np.ascontiguousarray(data, dtype=_NUMPY[str(typ)])
    bitmap = None
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(typ, len(data), [bitmap, pa.py_buffer(data)])


def binary(values: list, typ: pa.DataType | None = None) -> pa.Array:
    """A binary (or, with ``typ=pa.string()``, string) array from bytes / str values."""
    typ = typ or pa.binary()
    encoded = [v.encode("utf-8", "surrogatepass") if isinstance(v, str) else bytes(v) for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    if offsets[-1] >= 2**31:
        typ = pa.large_binary() if typ == pa.binary() else pa.large_string()
    else:
        offsets = offsets.astype(np.int32)
    return pa.Array.from_buffers(typ, len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def strings(values: list) -> pa.Array:
    return binary(values, pa.string())


def to_numpy(column: Any, dtype: Any) -> np.ndarray:
    """The values of a primitive (chunked) array as NumPy, nulls as whatever their slots hold."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    parts = []
    for chunk in chunks:
        buf = chunk.buffers()[1]
        parts.append(np.frombuffer(buf, dtype=dtype)[chunk.offset:chunk.offset + len(chunk)] if buf is not None
                     else np.zeros(len(chunk), dtype=dtype))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def valid(column: Any) -> np.ndarray | None:
    """True where a (chunked) array has a value; None when it has no nulls."""
    if column.null_count == 0:
        return None
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    parts = []
    for chunk in chunks:
        bitmap = chunk.buffers()[0]
        if bitmap is None:
            parts.append(np.ones(len(chunk), dtype=bool))
        else:
            bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
            parts.append(bits[chunk.offset:chunk.offset + len(chunk)].astype(bool))
    return np.concatenate(parts)
