"""Short, human text for values: numbers, ages, durations, cells.

Shared by the terminal tables (cli/), the experiment's announcements and
RunCollection's repr; plain strings, no terminal library.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Any


_EXP = re.compile(r"e([+-])0*(\d)")


def fmt_number(value: Any, width: int = 9) -> str:
    """A number in at most ``width`` characters where possible: significant digits, then scientific.

    >>> fmt_number(0.788753), fmt_number(3e-05), fmt_number(1234567.891), fmt_number(1500)
    ('0.788753', '3e-5', '1.23457e6', '1500')
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= width else _compact(f"{value:.{max(width - 5, 1)}e}")
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 10 ** min(width, 15):
            return str(int(value)) if abs(value) >= 1 or value == 0 else f"{value:g}"
        for digits in (6, 5, 4, 3, 2):
            text = _compact(f"{value:.{digits}g}")
            if len(text) <= width:
                return text
        return _compact(f"{value:.1e}")
    return str(value)


def _compact(text: str) -> str:
    return _EXP.sub(lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)


def fmt_ago(ts: float | None, now: float | None = None) -> str:
    """``"3 min ago"``; a date once it is more than 30 days old."""
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return "-"
    delta = (time.time() if now is None else now) - ts
    if delta < 0:
        return "just now" if delta > -60 else fmt_time(ts)
    if delta < 60:
        return f"{int(delta)} s ago"
    if delta < 90 * 60:
        return f"{int(delta // 60)} min ago"
    if delta < 36 * 3600:
        return f"{int(delta // 3600)} h ago"
    if delta < 30 * 86400:
        return f"{int(delta // 86400)} d ago"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


def fmt_time(ts: float | None) -> str:
    """Local time, to the second."""
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_when(ts: float | None, absolute: bool) -> str:
    return fmt_time(ts) if absolute else fmt_ago(ts)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def fmt_value(value: Any, width: int = 9) -> str:
    """Any cell value: numbers compact, missing as ``-``, lists of strings joined."""
    if value is None:
        return "-"
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar
        value = value.item()
    if isinstance(value, (int, float)):
        return fmt_number(value, width)
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ", ".join(value) or "-"
    if isinstance(value, (dict, list, tuple)):
        import json

        return json.dumps(value, default=str, separators=(",", ":"))
    return " ".join(str(value).split())  # a newline inside a cell would break the row


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def fmt_bytes(n: float) -> str:
    """A size for people: 118 B, 4.2 KiB, 3.1 MiB, 2.0 GiB."""
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# -- control characters --------------------------------------------------------------------
# A run name, tag, param, experiment or sequence name is text from anyone who could write
# to the repository; printed raw, "\x1b]0;...\x07" retitles the terminal, "\x1b[2J" clears
# it, and a right-to-left override makes a line read backwards. The CLI (cli/table.py) and
# the server's commands pass every name and value they print through these: C0
# controls (but newline and tab in whole lines), DEL, C1 controls (\x9b is CSI on some
# terminals) and the bidi embeddings, overrides and isolates become visible escapes,
# written as Python writes them (\x1b, \u202e). The colour rich adds is styling, not
# text, so it is not touched.
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CELL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_CELL.update({c: f"\\u{c:04x}" for c in _BIDI})
_CELL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
_LINES = {c: v for c, v in _CELL.items() if c not in (0x09, 0x0A)}


def safe(text: str) -> str:
    """One table cell or name, every control character escaped (newlines too)."""
    return text.translate(_CELL)


def safe_lines(text: str) -> str:
    """Text of one or more lines: controls escaped, newlines and tabs kept."""
    return text.translate(_LINES)
