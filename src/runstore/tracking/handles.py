"""Short run handles and the resolution of what a user types to name a run.

A run id is 24 hex characters that begin with the creation time, so ids made
close together share a long prefix (11 characters were needed to name one run
of a sweep).  The *handle* is 8 characters drawn from the id's random half
instead: ``blake2b`` of the 6 random bytes, the first 40 bits written in
Crockford's base32 (digits and lowercase letters without i, l, o, u, so it
reads aloud and never looks like another letter).

Why hash instead of printing the random bytes: one process mints its ids by
incrementing the first random value, so the raw random parts of a sweep's runs
differ only in their last characters; the hash spreads them.  40 bits make a
clash unlikely in practice (about 1 in 500,000 for 1,000 runs, 1 in 5,000 for
10,000); when two runs do share a handle, naming it lists both, like any
ambiguous prefix, and the full id always works.

The handle is derived, never stored: no format change, and old repositories
get handles for free.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Sequence

from ..errors import AmbiguousRunError, RunNotFoundError

HANDLE_LENGTH = 8
ID_LENGTH = 24
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase
_HEX = frozenset("0123456789abcdef")


@functools.lru_cache(maxsize=1 << 18)  # resolving a handle hashes every id: remember them
def handle(run_id: str) -> str:
    """The 8-character handle of a run id (``"k3m9x2qa"``)."""
    import hashlib  # not at import time: ~2.5 ms (OpenSSL) a script that tracks never needs

    digest = hashlib.blake2b(bytes.fromhex(run_id[12:]), digest_size=5).digest()
    n = int.from_bytes(digest, "big")
    return "".join(_ALPHABET[(n >> shift) & 31] for shift in range(35, -1, -5))


def normalise(text: str) -> str:
    """What the user typed, as it is compared: trimmed and lowercase."""
    return text.strip().lower()


def matches(ids: Iterable[str], text: str) -> list[str]:
    """The ids named by ``text``: those whose handle starts with it, else those whose id does.

    Handles come first because they are what tables show; an id prefix only
    counts when no handle matches (ids all begin with the time, so a short id
    prefix is rarely what someone means when a handle fits).
    """
    text = normalise(text)
    if not text:
        return []
    ids = list(ids)
    if len(text) <= HANDLE_LENGTH:
        by_handle = [run_id for run_id in ids if handle(run_id).startswith(text)]
        if by_handle:
            return by_handle
    if set(text) <= _HEX:
        return [run_id for run_id in ids if run_id.startswith(text)]
    return []


def resolve(text: str, ids: Callable[[], Sequence[str]], describe: Callable[[str], tuple[str | None, float]],
            where: str) -> str:
    """The one run id that ``text`` names, or a RunNotFoundError / AmbiguousRunError.

    ``ids()`` lists every run id (only called when ``text`` is not a full id),
    ``describe(id)`` gives (name, created_at) for the candidates of an ambiguous
    prefix, ``where`` names the repository in messages.
    """
    key = normalise(text)
    if len(key) == ID_LENGTH and set(key) <= _HEX:
        return key
    if not key:
        raise RunNotFoundError(f"an empty run id names no run in {where}; list them with `runstore ls`")
    found = matches(ids(), key)
    if len(found) == 1:
        return found[0]
    if not found:
        raise RunNotFoundError(
            f"no run id or handle starts with {text.strip()!r} in {where}; list them with `runstore ls`"
        )
    raise AmbiguousRunError(ambiguous_message(text.strip(), found, describe), candidates=found)


def ambiguous_message(text: str, found: list[str], describe: Callable[[str], tuple[str | None, float]],
                      shown: int = 8) -> str:
    lines = [f"{text!r} is ambiguous: {len(found)} runs match; type more characters or use one of:"]
    for run_id in found[:shown]:
        name, created = describe(run_id)
        from datetime import datetime

        when = datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M")
        name = name or "-"
        if len(name) > 40:  # one candidate per line, within 80 columns
            name = name[:39] + "…"
        lines.append(f"  {handle(run_id)}  {name:<40}  created {when}")
    if len(found) > shown:
        lines.append(f"  ... and {len(found) - shown} more")
    return "\n".join(lines)

