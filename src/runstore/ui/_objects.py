"""Object sequences (issue 13) as the run detail page shows them, through the public API.

Images, audio and figures travel as their stored encoded bytes (PNG/JPEG, WAV, SVG or
the plotly JSON) with an ETag that is the SHA-256 of those bytes (the key the blob
database stores them under), so a browser revalidates instead of downloading again.
Text comes in pages, distributions as one small matrix (at most ``width`` rows of
counts over steps), arrays as JSON.  Every read goes through ``run.sequence(...)``
indexing or ``seq.range``: only the blocks (and blobs) of the points asked for are
read, never a whole 100,000-image sequence.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from runstore import InvalidValueError, Repo, RunstoreError

OBJECT_TYPES = ("image", "text", "distribution", "figure", "audio", "array")
MAX_STEPS = 5000  # slider positions sent at most (a slider has a few hundred pixels)
MAX_WIDTH = 2000  # distribution heatmap rows
MAX_BINS = 256
MAX_ARRAY = 10_000  # elements sent as JSON; bigger arrays: shape, dtype, min, max, .npy link
MAX_TEXT_PAGE = 500


class UINotFound(RunstoreError, LookupError):
    """Something the request names does not exist (a step, a point); answered with 404."""


def _bad(message: str) -> Exception:
    from ._data import UIError

    return UIError(message)


def _describe(name: str, context: dict) -> str:
    from ._data import context_key

    return context_key(name, context)


def parse_context(raw: Any) -> dict:
    """``context`` from a query string: a JSON object (``{"subset": "val"}``), or empty."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        ctx = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad(f"'context' must be a JSON object such as {{\"subset\": \"val\"}}: {exc}") from None
    if not isinstance(ctx, dict):
        raise _bad(f"'context' must be a JSON object such as {{\"subset\": \"val\"}}, got {raw!r}")
    return ctx


def etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


class ObjectViews:
    """The read-only object routes of the UI; every method takes parsed request values."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    # -- lookup ---------------------------------------------------------------------------------
    def _seq(self, run_id: str, name: str | None, context: dict, want: tuple[str, ...] = OBJECT_TYPES):
        if not name:
            raise _bad("'name' (the sequence name, e.g. samples) is required")
        run = self.repo.get_run(run_id)
        seq = run.sequence(name, context)  # SequenceNotFoundError (404) names what the run has
        if seq.type not in want:
            raise _bad(f"{_describe(name, context)} of run {run.id} holds {seq.type} values; "
                       f"this route serves {' or '.join(want)} sequences")
        return run, seq

    def _point(self, seq: Any, step: int | None, index: int | None, exact: bool) -> tuple[Any, int, int | None]:
        """(object, its step, its position when known) for ``index`` (negative from the end),
        ``step`` (the nearest point unless ``exact``) or, with neither, the last point.

        Steps are found with ``seq.range`` probes, which read only the blocks around the
        step: ``seq.steps`` would decode every block header (~0.25 s at 100,000 images)."""
        n = seq.count
        where = _describe(seq.name, seq.context)
        if n == 0:
            raise UINotFound(f"{where} has no points yet")
        if index is None and step is None:
            index = -1
        if index is not None:
            i = index + n if index < 0 else index
            if not 0 <= i < n:
                raise UINotFound(f"{where} has {n} points: index {index} is out of range (0..{n - 1}, or -1 for the last)")
            part = seq[i:i + 1]
            return part.values[0], int(part.steps[0]), i
        hit = seq.range(step, step + 1)
        if len(hit):
            return hit.values[-1], int(hit.steps[-1]), None
        obj, at = self._nearest(seq, step)
        if exact:
            raise UINotFound(f"{where} has no point at step {step} (steps {seq.first_step}..{seq.last_step}; "
                             f"the nearest is step {at}); leave out exact=1 to get the nearest")
        return obj, at, None

    @staticmethod
    def _nearest(seq: Any, step: int) -> tuple[Any, int]:
        # Windows of doubling width on both sides: the first that holds a point holds the
        # nearest one (a tie goes to the earlier step), and few points besides.  Each
        # probe is a binary search over the blocks' first steps plus the blocks it hits.
        # Beyond the first or last step tracked, the first window already reaches that point.
        width = max(1, step - seq.last_step, seq.first_step - step)
        while width < (1 << 64):
            below = seq.range(max(step - width, -(1 << 63)), step)
            above = seq.range(step + 1, min(step + width + 1, (1 << 63) - 1))
            cands = []
            if len(below):
                k = int(np.argmax(below.steps))
                cands.append((step - int(below.steps[k]), 0, below.values[k], int(below.steps[k])))
            if len(above):
                k = int(np.argmin(above.steps))
                cands.append((int(above.steps[k]) - step, 1, above.values[k], int(above.steps[k])))
            if cands:
                best = min(cands, key=lambda c: (c[0], c[1]))
                return best[2], best[3]
            width *= 2
        part = seq[seq.count - 1:]  # unreachable with count > 0
        return part.values[0], int(part.steps[0])

    # -- routes ---------------------------------------------------------------------------------
    def list(self, run_id: str) -> list[dict]:
        """The run's object sequences with type, count and step range."""
        from ._data import context_key

        run = self.repo.get_run(run_id)
        out = []
        for name, ctx in run.sequences():
            s = run.sequence(name, ctx)
            if s.type in OBJECT_TYPES:
                out.append({"name": name, "context": ctx, "key": context_key(name, ctx), "type": s.type,
                            "count": s.count, "first_step": s.first_step, "last_step": s.last_step})
        return out

    def steps(self, run_id: str, name: str, context: dict, max_steps: int = MAX_STEPS) -> dict:
        """The distinct steps of a sequence, sorted, evenly thinned to ``max_steps`` (first and
        last kept): what a step slider moves over."""
        if not 2 <= max_steps <= 100_000:
            raise _bad(f"'max' must be between 2 and 100000, got {max_steps}")
        _, seq = self._seq(run_id, name, context)
        steps = np.unique(seq.steps)
        thinned = len(steps) > max_steps
        if thinned:
            steps = steps[np.unique(np.linspace(0, len(steps) - 1, max_steps).round().astype(np.int64))]
        out = {"name": seq.name, "context": seq.context, "type": seq.type, "count": seq.count,
               "steps": steps.tolist(), "thinned": thinned}
        if seq.type == "figure" and seq.count:
            out["library"] = seq[-1].library  # how the page shows it: an SVG, or a link to the JSON
        return out

    def at(self, run_id: str, name: str, context: dict, step: int | None, index: int | None,
           exact: bool = False, fmt: str | None = None) -> tuple[bytes, str, dict]:
        """(bytes, content type, headers) of one point: the encoded image, WAV, figure (PNG,
        SVG or plotly JSON), array (.npy), text (UTF-8) or distribution (JSON)."""
        run, seq = self._seq(run_id, name, context)
        obj, at_step, i = self._point(seq, step, index, exact)  # one point: its blocks and blobs only
        kind = seq.type
        caption = getattr(obj, "caption", None)
        if kind == "image":
            data, ctype = obj.data, "image/jpeg" if obj.format in ("jpeg", "jpg") else "image/png"
        elif kind == "audio":
            data, ctype = obj.data, "audio/wav"
        elif kind == "figure":
            data, ctype = self._figure(obj, fmt, seq)
        elif kind == "array":
            if fmt not in (None, "npy"):
                raise _bad(f"an array is served as npy (or as JSON by /objects/array), not {fmt!r}")
            data, ctype = obj.data, "application/octet-stream"
        elif kind == "text":
            data, ctype = str(obj).encode("utf-8"), "text/plain; charset=utf-8"
        else:  # distribution
            data = json.dumps({"counts": obj.counts.tolist(), "bin_edges": obj.bin_edges.tolist()}).encode()
            ctype = "application/json"
        headers = {"ETag": etag(data), "X-Step": str(at_step), "X-Count": str(seq.count)}
        if i is not None:
            headers["X-Index"] = str(i)
        if caption:
            from urllib.parse import quote

            headers["X-Caption"] = quote(caption)  # header values are latin-1: percent-encoded UTF-8
        return data, ctype, headers

    @staticmethod
    def _figure(obj: Any, fmt: str | None, seq: Any) -> tuple[bytes, str]:
        if obj.library == "plotly":
            if fmt not in (None, "json"):
                raise UINotFound(f"{_describe(seq.name, seq.context)} holds a plotly figure, stored as its JSON "
                                 f"only: there is no {fmt} of it (ask for format=json)")
            return obj.data, "application/json"
        if fmt in (None, "png"):
            return obj.data, "image/png"
        if fmt == "svg":
            if obj.svg is None:
                raise UINotFound(f"this point of {_describe(seq.name, seq.context)} has no SVG; ask for format=png")
            return obj.svg, "image/svg+xml"
        raise _bad(f"a matplotlib figure is served as png or svg, not {fmt!r}")

    def texts(self, run_id: str, name: str, context: dict, offset: int = 0, limit: int = 50,
              desc: bool = False) -> dict:
        """One page of a text sequence: ``rows`` of ``{index, step, epoch, text}``; with ``desc``
        the page counts from the newest point."""
        if not 1 <= limit <= MAX_TEXT_PAGE or offset < 0:
            raise _bad(f"'limit' must be 1..{MAX_TEXT_PAGE} and 'offset' >= 0, got {limit} and {offset}")
        _, seq = self._seq(run_id, name, context, ("text",))
        n = seq.count
        lo, hi = (max(n - offset - limit, 0), max(n - offset, 0)) if desc else (min(offset, n), min(offset + limit, n))
        part = seq[lo:hi]
        rows = [{"index": lo + k, "step": int(part.steps[k]), "epoch": _finite(part.epochs[k]), "text": str(part.values[k])}
                for k in range(len(part))]
        if desc:
            rows.reverse()
        return {"total": n, "offset": offset, "limit": limit, "desc": desc, "rows": rows}

    def distribution(self, run_id: str, name: str, context: dict, width: int = 300) -> dict:
        """Counts over steps as one matrix: at most ``width`` rows (consecutive points averaged
        in equal buckets), every row on the same bins (points whose edges differ, as
        ``Distribution(values)`` of a moving tensor gives, are re-binned onto a common grid
        by their bin centres)."""
        if not 1 <= width <= MAX_WIDTH:
            raise _bad(f"'width' must be 1..{MAX_WIDTH}, got {width}")
        _, seq = self._seq(run_id, name, context, ("distribution",))
        n = seq.count
        if n == 0:
            raise UINotFound(f"{_describe(seq.name, seq.context)} has no points yet")
        part = seq[:]  # counts and edges are inline in the blocks (no blob reads)
        try:
            counts, edges, rebinned = part.to_numpy().astype(np.float64), part.values[0].bin_edges, False
        except InvalidValueError:  # edges differ between points
            counts, edges = _rebin([d.counts for d in part.values], [d.bin_edges for d in part.values])
            rebinned = True
        steps = part.steps.astype(np.int64)
        per = -(-n // width)  # points per row
        starts = np.arange(0, n, per)
        if per > 1:
            sizes = np.diff(np.append(starts, n))
            counts = np.add.reduceat(counts, starts, axis=0) / sizes[:, None]
        return {"name": seq.name, "context": seq.context, "count": n, "rows": len(starts), "per_row": per,
                "steps": steps[starts].tolist(), "last_steps": steps[np.append(starts[1:], n) - 1].tolist(),
                "bin_edges": [float(e) for e in edges], "rebinned": rebinned,
                "counts": np.round(counts, 6).tolist(), "max": float(counts.max()) if counts.size else 0.0}

    def array(self, run_id: str, name: str, context: dict, step: int | None, index: int | None,
              exact: bool = False) -> dict:
        """One array point as JSON: shape, dtype, min/max and the values (nested lists) when it
        has at most MAX_ARRAY elements; non-finite values are null."""
        _, seq = self._seq(run_id, name, context, ("array",))
        obj, at_step, i = self._point(seq, step, index, exact)
        arr = obj.to_numpy()
        out: dict = {"name": seq.name, "context": seq.context, "index": i, "step": at_step,
                     "count": seq.count, "shape": list(arr.shape), "dtype": str(arr.dtype), "values": None,
                     "min": None, "max": None, "truncated": arr.size > MAX_ARRAY}
        if arr.dtype.kind in "biuf" and arr.size:
            real = arr.astype(np.float64)
            finite = real[np.isfinite(real)]
            if finite.size:
                out["min"], out["max"] = float(finite.min()), float(finite.max())
            if arr.size <= MAX_ARRAY:
                if arr.dtype.kind == "f" and finite.size != real.size:
                    out["values"] = np.where(np.isfinite(real), real, None).tolist()
                else:
                    out["values"] = arr.tolist()
        elif arr.size <= MAX_ARRAY:
            out["values"] = np.vectorize(str, otypes=[object])(arr).tolist() if arr.size else []
        return out


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _rebin(counts: list[np.ndarray], edges: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Counts with their own edges -> one (n, bins) matrix on common edges spanning them all.

    Each bin's count goes to the common bin holding its centre (vectorised over every bin
    of every point at once)."""
    bins = min(max(len(c) for c in counts), MAX_BINS)
    lo = min(float(e[0]) for e in edges)
    hi = max(float(e[-1]) for e in edges)
    if hi <= lo:
        hi = lo + 1.0
    common = np.linspace(lo, hi, bins + 1)
    sizes = np.array([len(c) for c in counts])
    flat = np.concatenate(counts).astype(np.float64)
    centres = np.concatenate([(e[:-1] + e[1:]) / 2 for e in edges])
    rows = np.repeat(np.arange(len(counts)), sizes)
    cols = np.clip(((centres - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    out = np.zeros((len(counts), bins))
    np.add.at(out, (rows, cols), flat)
    return out, common
