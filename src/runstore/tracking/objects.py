"""Values that are not numbers: Image, Text, Distribution, Figure, Audio, Array.

A constructor validates what it can cheaply and *copies* its input, nothing more:
``track(Image(array))`` must cost microseconds on the training thread. The heavy
work (PNG encoding, histogramming, figure rendering, WAV writing) happens in
``_encode()``, which the flush (background thread, or an explicit flush) calls.

``_encode()`` returns ``(meta, blobs)``: ``meta`` is a small msgpack-able dict kept
in the object block, ``blobs`` maps a role ("data", "svg") to bytes stored once by
content hash in the blob database. Reading builds the same classes back with
``_stored(meta, blobs)``; their attributes then come from the stored bytes.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np

from ..errors import InvalidValueError

TYPES = ("image", "text", "distribution", "figure", "audio", "array")


def _fail(type_name: str, what: str, accepted: str) -> InvalidValueError:
    # The sequence is not known yet here; track() prefixes it (see Run.track).
    return InvalidValueError(f"{type_name}: {what}; accepted: {accepted}")


def _as_array(x: Any) -> Any:
    """A torch/jax tensor as a NumPy array (without importing torch); else ``x``."""
    mod = type(x).__module__ or ""
    if mod.startswith("torch") and hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if mod.startswith("jax") or mod.startswith("jaxlib"):
        return np.asarray(x)
    return x


def _caption(caption: Any, type_name: str) -> str | None:
    if caption is not None and not isinstance(caption, str):
        raise _fail(type_name, f"caption is a {type(caption).__name__}", "a str or None")
    return caption


_ENCODING = tuple(threading.Lock() for _ in range(16))


class TrackedObject:
    """Base of the object values; ``type`` is the sequence type they make."""

    type: str = ""
    _meta: dict
    _blobs: dict

    def _encode(self) -> tuple[dict, dict]:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def _encoded(self) -> tuple[dict, dict]:
        if getattr(self, "_blobs", None) is None:
            # Two flushes may reach one object (the flush thread's encode_ahead and a
            # flush() call): one encodes, the other waits (a figure's encode drops its
            # input, a second encode would find none). Striped: no lock per object.
            with _ENCODING[id(self) % len(_ENCODING)]:
                if getattr(self, "_blobs", None) is None:
                    self._meta, self._blobs = self._encode()
        return self._meta, self._blobs

    def _input_bytes(self) -> int | None:
        """The size of the input still to encode (None: unknown or costly, as a
        figure's rendering): ``track`` encodes small objects at once (see
        ``object_sequence.ENCODE_AT_TRACK``)."""
        return None

    @classmethod
    def _stored(cls, meta: dict, blobs: dict) -> "TrackedObject":
        self = cls.__new__(cls)
        self._meta, self._blobs = meta, blobs
        self._init_stored()
        return self

    def _init_stored(self) -> None:
        pass


# -- Image --------------------------------------------------------------------
_IMAGE_ACCEPTS = ("a NumPy array HxW or HxWx1/3/4 (uint8, or float in [0, 1]), a PIL image, "
                  "a torch tensor CxHxW, or PNG/JPEG bytes")


def _pil() -> Any:
    try:
        from PIL import Image as PILImage
    except ImportError:  # Pillow is a dependency; a broken environment gets told how to fix it
        raise InvalidValueError(
            "Image needs Pillow: pip install 'runstore' (or pip install pillow)"
        ) from None
    return PILImage


class Image(TrackedObject):
    """An image; stored encoded (PNG by default; bytes given are stored as they are)."""

    type = "image"

    def __init__(self, data: Any, caption: str | None = None, format: str = "png") -> None:
        self.caption = _caption(caption, "Image")
        fmt = str(format).lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in ("png", "jpeg"):
            raise _fail("Image", f"format {format!r}", "'png' or 'jpeg'")
        self.format = fmt
        self._blobs = None
        self._bytes: bytes | None = None
        self._pixels: np.ndarray | None = None
        self._pil_image = None
        if isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
            if raw[:8] == b"\x89PNG\r\n\x1a\n":
                self.format = "png"
            elif raw[:3] == b"\xff\xd8\xff":
                self.format = "jpeg"
            else:
                raise _fail("Image", "bytes that are neither PNG nor JPEG", _IMAGE_ACCEPTS)
            self._bytes = raw
            return
        mod = type(data).__module__ or ""
        if mod.startswith("PIL.") and hasattr(data, "save"):
            self._pil_image = data.copy()
            return
        arr = _as_array(data)
        from_tensor = arr is not data
        if not isinstance(arr, np.ndarray):
            raise _fail("Image", f"a {type(data).__name__}", _IMAGE_ACCEPTS)
        if from_tensor and arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
            arr = arr.transpose(1, 2, 0)  # CxHxW (torch) -> HxWxC
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or 0 in arr.shape:
            raise _fail("Image", f"an array of shape {arr.shape}", _IMAGE_ACCEPTS)
        if arr.dtype == np.uint8:
            pass
        elif arr.dtype.kind == "f":
            lo, hi = (float(arr.min()), float(arr.max()))
            if not (lo >= 0.0 and hi <= 1.0):  # also false for NaN
                raise _fail("Image", f"float pixels from {lo} to {hi}", "floats in [0, 1] or uint8")
        else:
            raise _fail("Image", f"an array of dtype {arr.dtype}", _IMAGE_ACCEPTS)
        if self.format == "jpeg" and arr.ndim == 3 and arr.shape[2] == 4:
            raise _fail("Image", "an RGBA array with format='jpeg'", "format='png' for 4 channels")
        self._pixels = np.array(arr, copy=True)  # the caller may reuse its buffer

    def _encode(self) -> tuple[dict, dict]:
        PILImage = _pil()
        if self._bytes is not None:
            with PILImage.open(io.BytesIO(self._bytes)) as im:
                size, mode = im.size, im.mode
            data = self._bytes
        else:
            if self._pil_image is not None:
                im = self._pil_image
            else:
                arr = self._pixels
                if arr.dtype != np.uint8:
                    arr = np.rint(arr * 255.0).astype(np.uint8)
                if arr.ndim == 3 and arr.shape[2] == 1:
                    arr = arr[:, :, 0]
                im = PILImage.fromarray(arr)
            if self.format == "jpeg" and im.mode not in ("RGB", "L"):
                im = im.convert("RGB")
            buf = io.BytesIO()
            im.save(buf, format=self.format.upper())
            data = buf.getvalue()
            size, mode = im.size, im.mode
        meta = {"caption": self.caption, "format": self.format, "width": size[0], "height": size[1],
                "mode": mode}
        return meta, {"data": data}

    def _input_bytes(self) -> int | None:
        if self._bytes is not None:
            return len(self._bytes)
        if self._pixels is not None:
            return self._pixels.nbytes
        if self._pil_image is not None:
            return self._pil_image.width * self._pil_image.height * len(self._pil_image.getbands())
        return None

    def _init_stored(self) -> None:
        self.caption = self._meta.get("caption")
        self.format = self._meta.get("format", "png")

    @property
    def data(self) -> bytes:
        """The encoded image (PNG or JPEG bytes)."""
        return self._encoded()[1]["data"]

    @property
    def width(self) -> int:
        return int(self._encoded()[0]["width"])

    @property
    def height(self) -> int:
        return int(self._encoded()[0]["height"])

    def to_pil(self) -> Any:
        im = _pil().open(io.BytesIO(self.data))
        im.load()
        return im

    def to_numpy(self) -> np.ndarray:
        """Pixels as uint8, HxW or HxWxC."""
        return np.asarray(self.to_pil())

    def __repr__(self) -> str:
        cap = f" caption={self.caption!r}" if self.caption else ""
        return f"<Image {self.width}x{self.height} {self.format}{cap}>"


# -- Text ---------------------------------------------------------------------
class Text(TrackedObject):
    """A string (generated text, a sample's label...); stored inline in its block."""

    type = "text"

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise _fail("Text", f"a {type(text).__name__}", "a str")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail("Text", "a string with lone surrogates", "a str encodable as UTF-8") from None
        self.text = text
        self._blobs = None

    def _encode(self) -> tuple[dict, dict]:
        return {"text": self.text}, {}

    def _input_bytes(self) -> int | None:
        return len(self.text)

    def _init_stored(self) -> None:
        self.text = self._meta["text"]

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Text) and other.text == self.text

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        short = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"<Text {short!r}>"


# -- Distribution -------------------------------------------------------------
_DIST_ACCEPTS = "a non-empty array of finite numbers (NumPy, torch, list), or Distribution.from_histogram(counts, bin_edges)"


class Distribution(TrackedObject):
    """A histogram of values (weights, gradients...): ``counts`` and ``bin_edges``.

    The values are copied here and histogrammed at flush time, off the training
    thread."""

    type = "distribution"

    def __init__(self, values: Any, bins: int = 64) -> None:
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 1 <= int(bins) <= 1 << 20:
            raise _fail("Distribution", f"bins={bins!r}", "an int from 1 to 1048576")
        arr = _as_array(values)
        try:
            arr = np.asarray(arr)
        except Exception:
            raise _fail("Distribution", f"a {type(values).__name__}", _DIST_ACCEPTS) from None
        if arr.dtype.kind not in "biuf":
            raise _fail("Distribution", f"values of dtype {arr.dtype}", _DIST_ACCEPTS)
        if arr.size == 0:
            raise _fail("Distribution", "an empty array", _DIST_ACCEPTS)
        # min/max propagate NaN and show infinities, without the bool array np.isfinite makes
        if arr.dtype.kind == "f" and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):
            raise _fail("Distribution", "NaN or infinite values", _DIST_ACCEPTS)
        self.bins = int(bins)
        self._values = np.array(arr, copy=True).reshape(-1)
        self._blobs = None

    @classmethod
    def from_histogram(cls, counts: Any, bin_edges: Any) -> "Distribution":
        c = np.asarray(_as_array(counts), dtype=np.float64).reshape(-1)
        e = np.asarray(_as_array(bin_edges), dtype=np.float64).reshape(-1)
        if not len(c) or len(e) != len(c) + 1:
            raise _fail("Distribution", f"{len(c)} counts and {len(e)} bin edges",
                        "n >= 1 counts and n + 1 bin edges")
        if not (np.isfinite(c).all() and np.isfinite(e).all()) or (c < 0).any() or (np.diff(e) <= 0).any():
            raise _fail("Distribution", "counts or edges that are negative, non-finite or not increasing",
                        "finite counts >= 0 and strictly increasing edges")
        self = cls.__new__(cls)
        self.bins = len(c)
        self._values = None
        self._meta = {"counts": c.astype("<f8").tobytes(), "edges": e.astype("<f8").tobytes()}
        self._blobs = {}
        return self

    def _encode(self) -> tuple[dict, dict]:
        counts, edges = np.histogram(self._values, bins=self.bins)
        return ({"counts": counts.astype("<f8").tobytes(), "edges": edges.astype("<f8").tobytes()}, {})

    @property
    def counts(self) -> np.ndarray:
        return np.frombuffer(self._encoded()[0]["counts"], "<f8").copy()

    @property
    def bin_edges(self) -> np.ndarray:
        return np.frombuffer(self._encoded()[0]["edges"], "<f8").copy()

    def to_numpy(self) -> np.ndarray:
        """The counts (one per bin); ``bin_edges`` has one more element."""
        return self.counts

    def __repr__(self) -> str:
        e = self.bin_edges
        return f"<Distribution {len(e) - 1} bins [{e[0]:g}, {e[-1]:g}]>"


# -- Figure -------------------------------------------------------------------
_FIGURE_ACCEPTS = "a matplotlib Figure or a plotly Figure"


class Figure(TrackedObject):
    """A matplotlib figure (stored as PNG and SVG) or a plotly figure (stored as its JSON).

    The figure is rendered at flush time: do not change it until the run has
    flushed (``run.flush()``) if you reuse one figure object between calls."""

    type = "figure"

    def __init__(self, figure: Any) -> None:
        mod = type(figure).__module__ or ""
        if mod.startswith("matplotlib") and hasattr(figure, "savefig"):
            self.library = "matplotlib"
        elif mod.startswith("plotly") and hasattr(figure, "to_json"):
            self.library = "plotly"
        else:
            raise _fail("Figure", f"a {type(figure).__module__}.{type(figure).__name__}", _FIGURE_ACCEPTS)
        self._figure = figure
        self._blobs = None

    def _encode(self) -> tuple[dict, dict]:
        fig = self._figure
        if self.library == "plotly":
            return {"library": "plotly", "format": "json"}, {"data": fig.to_json().encode("utf-8")}
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png")
        fig.savefig(svg, format="svg")
        return {"library": "matplotlib", "format": "png"}, {"data": png.getvalue(), "svg": svg.getvalue()}

    def _init_stored(self) -> None:
        self.library = self._meta["library"]
        self._figure = None

    @property
    def data(self) -> bytes:
        """PNG bytes (matplotlib) or the plotly JSON (UTF-8 bytes)."""
        return self._encoded()[1]["data"]

    @property
    def svg(self) -> bytes | None:
        return self._encoded()[1].get("svg")

    @property
    def format(self) -> str:
        return self._encoded()[0]["format"]

    def to_plotly(self) -> Any:
        if self.library != "plotly":
            raise InvalidValueError("this figure was a matplotlib figure: use .data (PNG) or .svg")
        import plotly.io

        return plotly.io.from_json(self.data.decode("utf-8"))

    def to_pil(self) -> Any:
        if self.library != "matplotlib":
            raise InvalidValueError("this figure is a plotly figure: use .to_plotly() or .data (JSON)")
        im = _pil().open(io.BytesIO(self.data))
        im.load()
        return im

    def __repr__(self) -> str:
        return f"<Figure {self.library}>"


# -- Audio --------------------------------------------------------------------
_AUDIO_ACCEPTS = "a 1-D (samples) or 2-D (samples x channels) array of floats in [-1, 1] or int16"


class Audio(TrackedObject):
    """Sound, stored as a 16-bit PCM WAV file (the standard ``wave`` module)."""

    type = "audio"

    def __init__(self, samples: Any, rate: int = 16000, caption: str | None = None) -> None:
        self.caption = _caption(caption, "Audio")
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1 <= int(rate) <= 1_000_000:
            raise _fail("Audio", f"rate={rate!r}", "an int sample rate from 1 to 1000000 (Hz)")
        self.rate = int(rate)
        arr = _as_array(samples)
        if not isinstance(arr, np.ndarray):
            try:
                arr = np.asarray(arr)
            except Exception:
                raise _fail("Audio", f"a {type(samples).__name__}", _AUDIO_ACCEPTS) from None
        if arr.ndim not in (1, 2) or arr.size == 0 or (arr.ndim == 2 and arr.shape[1] > 64):
            raise _fail("Audio", f"an array of shape {arr.shape}", _AUDIO_ACCEPTS)
        if arr.dtype == np.int16:
            pass
        elif arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or float(np.abs(arr).max()) > 1.0:
                raise _fail("Audio", "float samples outside [-1, 1] (or NaN)", _AUDIO_ACCEPTS)
        else:
            raise _fail("Audio", f"samples of dtype {arr.dtype}", _AUDIO_ACCEPTS)
        self._samples = np.array(arr, copy=True)
        self._blobs = None

    def _input_bytes(self) -> int | None:
        return None if self._samples is None else self._samples.nbytes

    def _encode(self) -> tuple[dict, dict]:
        import wave

        arr = self._samples
        if arr.dtype != np.int16:
            arr = np.rint(arr * 32767.0).astype(np.int16)
        channels = 1 if arr.ndim == 1 else arr.shape[1]
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(np.ascontiguousarray(arr, "<i2").tobytes())
        meta = {"caption": self.caption, "rate": self.rate, "channels": channels, "frames": int(arr.shape[0])}
        return meta, {"data": buf.getvalue()}

    def _init_stored(self) -> None:
        self.caption = self._meta.get("caption")
        self.rate = int(self._meta["rate"])

    @property
    def data(self) -> bytes:
        """The WAV file's bytes."""
        return self._encoded()[1]["data"]

    @property
    def channels(self) -> int:
        return int(self._encoded()[0]["channels"])

    @property
    def duration(self) -> float:
        return self._encoded()[0]["frames"] / self.rate

    def to_numpy(self) -> np.ndarray:
        """int16 samples, (frames,) or (frames, channels)."""
        import wave

        with wave.open(io.BytesIO(self.data), "rb") as w:
            frames = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            ch = w.getnchannels()
        return frames.copy() if ch == 1 else frames.reshape(-1, ch).copy()

    def __repr__(self) -> str:
        return f"<Audio {self.duration:.2f}s {self.rate} Hz>"


# -- Array --------------------------------------------------------------------
_ARRAY_ACCEPTS = "a numeric array (bool, int, uint, float or complex) of any shape"


class Array(TrackedObject):
    """Any numeric ndarray (a confusion matrix, per-label metrics); shape and dtype kept (.npy)."""

    type = "array"

    def __init__(self, data: Any) -> None:
        arr = _as_array(data)
        try:
            arr = np.asarray(arr)
        except Exception:
            raise _fail("Array", f"a {type(data).__name__}", _ARRAY_ACCEPTS) from None
        if arr.dtype.kind not in "biufc":
            raise _fail("Array", f"an array of dtype {arr.dtype}", _ARRAY_ACCEPTS)
        self._array = np.array(arr, copy=True)
        self._blobs = None

    def _input_bytes(self) -> int | None:
        return self._array.nbytes

    def _encode(self) -> tuple[dict, dict]:
        buf = io.BytesIO()
        np.save(buf, self._array, allow_pickle=False)
        return {"shape": list(self._array.shape), "dtype": self._array.dtype.str}, {"data": buf.getvalue()}

    @property
    def data(self) -> bytes:
        """The .npy bytes."""
        return self._encoded()[1]["data"]

    @property
    def shape(self) -> tuple:
        return tuple(self._encoded()[0]["shape"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._encoded()[0]["dtype"])

    def to_numpy(self) -> np.ndarray:
        if getattr(self, "_array", None) is not None:
            return self._array.copy()
        return np.load(io.BytesIO(self.data), allow_pickle=False)

    def __repr__(self) -> str:
        return f"<Array shape={self.shape} dtype={self.dtype}>"


CLASSES: dict[str, type] = {c.type: c for c in (Image, Text, Distribution, Figure, Audio, Array)}
