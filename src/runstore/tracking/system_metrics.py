"""System metrics: one daemon thread per process samples the host (psutil) and its
GPUs (NVML) and tracks the figures into every live run that asked for them.

Why one thread for all runs: a sweep that keeps fifty runs open in one process
must not read /proc fifty times per interval, and the sample is the same for all
of them (they share the process). Why a thread at all: the training thread pays
nothing, not even a clock read; the sampler calls ``run.track`` like any other
caller, which appends to the run's in-memory buffers under the GIL.

Names (under the prefix ``system/``, step = whole seconds since the run started):

==========================  ===============================================
``cpu_percent``             whole machine, percent of all cores
``process_cpu_percent``     this process (100 = one core busy)
``memory_percent``          whole machine
``process_rss_mib``         this process's resident memory
``disk_read_mib_s``         machine-wide disk reads / writes, MiB per second
``disk_write_mib_s``        (over the last sampling period)
``net_recv_mib_s``          machine-wide network traffic, MiB per second
``net_sent_mib_s``
``gpu_utilization_percent`` per GPU, context ``{"gpu": i}`` with ``i`` the
``gpu_memory_used_mib``     CUDA index this process sees (CUDA_VISIBLE_DEVICES
``gpu_memory_percent``      is mapped to the physical devices)
``gpu_temperature_c``
``gpu_power_w``
==========================  ===============================================

psutil and nvidia-ml-py are optional (``runstore[system]``): without psutil there are
no host figures, without NVML or a GPU no GPU figures; neither is an error.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterable

from ..errors import ConfigError



def _log():
    import logging  # debug messages only: not worth importing logging with runstore

    return logging.getLogger("runstore.system_metrics")

DEFAULT_INTERVAL = 10.0
PREFIX = "system/"
_OFF = ("0", "false", "no", "off", "")
_MIB = 1024.0 * 1024.0

_cond = threading.Condition()
_watched: dict[int, "_Watch"] = {}
_thread: threading.Thread | None = None
_idle_wait = 3600.0  # the sampler's sleep when no run is watched (see _loop)
_wake_at = 0.0  # monotonic time the sampler sleeps until; 0.0 while it is awake (or not started)


class _Watch:
    __slots__ = ("run", "interval", "due", "start", "last_step", "warned", "samples")

    def __init__(self, run: Any, interval: float) -> None:
        self.run = run
        self.interval = interval
        self.due = time.monotonic() + interval
        try:
            self.start = run.created_at
        except Exception:  # a remote run resumed while its server is unreachable: steps from now
            self.start = time.time()
        self.last_step = -1
        self.warned = False
        self.samples = 0


def interval_for(arg: Any) -> float | None:
    """The sampling interval ``Run(system_metrics=arg)`` asks for, or None for off.

    None follows ``RUNSTORE_SYSTEM_METRICS`` (unset: on, every 10 s; ``0``/``off``: off;
    a number: that interval in seconds); True is on at the default interval; False is
    off; a positive number is the interval in seconds."""
    if arg is None:
        raw = os.environ.get("RUNSTORE_SYSTEM_METRICS")
        if raw is None:
            return DEFAULT_INTERVAL
        raw = raw.strip().lower()
        if raw in _OFF:
            return None
        if raw in ("1", "true", "yes", "on"):
            return DEFAULT_INTERVAL
        try:
            arg = float(raw)
        except ValueError:
            raise ConfigError(
                f"RUNSTORE_SYSTEM_METRICS={raw!r} is not 0/1 or an interval in seconds; "
                "set it to 0 (off), 1 (on, every 10 s) or e.g. 30"
            ) from None
    if arg is True:
        return DEFAULT_INTERVAL
    if arg is False:
        return None
    if isinstance(arg, (int, float)) and arg > 0 and arg == arg:
        return float(arg)
    raise ConfigError(
        f"system_metrics must be True, False or a sampling interval in seconds > 0, got {arg!r}"
    )


def watch(run: Any, interval: float | None) -> None:
    """Sample system metrics into ``run`` every ``interval`` seconds until ``unwatch``."""
    global _thread, _idle_wait
    if interval is None:
        return
    with _cond:
        watched = _watched[id(run)] = _Watch(run, interval)
        _idle_wait = interval
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="runstore-system-metrics", daemon=True)
            _thread.start()
        # Wake the sampler only when it would sleep past this run's first sample: waking
        # it for every new run (a thread switch and a GIL handoff) was ~75 µs of each
        # short run's life in a loop creating thousands of them (issue 22, target 3).
        if watched.due < _wake_at:
            _cond.notify()


def unwatch(run: Any) -> None:
    with _cond:
        _watched.pop(id(run), None)


def _reset_after_fork() -> None:
    # the parent's runs are the parent's; the child starts its own thread if it asks
    global _thread, _cond
    global _wake_at, _idle_wait
    _cond = threading.Condition()
    _watched.clear()
    _thread = None
    _wake_at = 0.0
    _idle_wait = 3600.0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _loop() -> None:
    global _wake_at, _idle_wait
    probe = Probe()
    while True:
        with _cond:
            now = time.monotonic()
            # With nothing watched (a loop of short runs: each closed before its first
            # sample), sleep one interval of the latest run, not an hour: the next run's
            # first sample is later than that, so its watch() need not wake this thread.
            wait = min((w.due - now for w in _watched.values()), default=_idle_wait)
            _idle_wait = 3600.0  # back to an hour once no run came for a whole interval
            if wait > 0:
                _wake_at = now + min(wait, 3600.0)
                _cond.wait(timeout=min(wait, 3600.0))
                _wake_at = 0.0  # awake: a watch() meanwhile is seen by the next pass
                continue
            due = [w for w in _watched.values() if w.due <= now]
            for w in due:
                w.due = now + w.interval
        sample = probe.sample()
        wall = time.time()
        for w in due:
            _record(w, sample, wall)


def _record(w: _Watch, sample: list, wall: float) -> None:
    step = max(int(wall - w.start), w.last_step + 1)
    w.last_step = step
    w.samples += 1
    try:
        for name, value, context in sample:
            w.run.track(value, name=name, step=step, context=context)
    except Exception:
        # a run closed between the sample and its tracking, a full disk ...: the
        # sampler never stops and never reaches the training thread
        if not w.warned:
            w.warned = True
            _log().debug("runstore: could not record system metrics into run %s", getattr(w.run, "id", "?"),
                      exc_info=True)


class Probe:
    """Reads the figures; one instance per sampling thread (it keeps the previous
    I/O counters to turn them into rates)."""

    def __init__(self, nvml: Any = None, visible: str | None = None) -> None:
        try:
            import psutil
        except ImportError:
            _log().debug("psutil is not installed: no host system metrics (pip install 'runstore[system]')")
            psutil = None
        self.psutil = psutil
        self.process = None
        self.previous: tuple | None = None
        if psutil is not None:
            self.process = psutil.Process()
            self.process.cpu_percent(None)  # the first call only starts the measuring window
            psutil.cpu_percent(None)
            self.previous = self._io()
        self.nvml, self.gpus = gpu_handles(nvml, os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible)

    def _io(self) -> tuple:
        ps = self.psutil
        disk = _safe(ps.disk_io_counters)
        net = _safe(ps.net_io_counters)
        return (time.monotonic(),
                (disk.read_bytes, disk.write_bytes) if disk is not None else None,
                (net.bytes_recv, net.bytes_sent) if net is not None else None)

    def sample(self) -> list[tuple[str, float, dict | None]]:
        out: list[tuple[str, float, dict | None]] = []
        ps = self.psutil
        if ps is not None:
            out.append((PREFIX + "cpu_percent", float(ps.cpu_percent(None)), None))
            out.append((PREFIX + "memory_percent", float(ps.virtual_memory().percent), None))
            try:
                with self.process.oneshot():
                    out.append((PREFIX + "process_cpu_percent", float(self.process.cpu_percent(None)), None))
                    out.append((PREFIX + "process_rss_mib", self.process.memory_info().rss / _MIB, None))
            except Exception:  # psutil.Error: /proc unreadable in some sandboxes
                _log().debug("runstore: process metrics unavailable", exc_info=True)
            now = self._io()
            then, self.previous = self.previous, now
            seconds = now[0] - then[0]
            if seconds > 0:
                for names, i in ((("disk_read_mib_s", "disk_write_mib_s"), 1), (("net_recv_mib_s", "net_sent_mib_s"), 2)):
                    if now[i] is not None and then[i] is not None:
                        for name, a, b in zip(names, now[i], then[i]):
                            out.append((PREFIX + name, max(a - b, 0) / _MIB / seconds, None))
        for index, handle in self.gpus:
            out.extend(_gpu_sample(self.nvml, index, handle))
        return out


def gpu_handles(nvml: Any, visible: str | None) -> tuple[Any, list[tuple[int, Any]]]:
    """NVML and (CUDA index, NVML handle) for each GPU this process sees; no
    handles without nvidia-ml-py, a driver or a GPU (quietly)."""
    if nvml is None:
        from .environment import nvidia_driver_possible

        if not nvidia_driver_possible():
            return None, []
        try:
            import pynvml as nvml  # the nvidia-ml-py package
        except ImportError:
            _log().debug("nvidia-ml-py is not installed: no GPU metrics")
            return None, []
    try:
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
        physical = visible_devices(nvml, count, visible)
        return nvml, [(i, nvml.nvmlDeviceGetHandleByIndex(p)) for i, p in enumerate(physical)]
    except Exception:  # NVMLError: no driver, no GPU
        _log().debug("NVML unavailable: no GPU metrics", exc_info=True)
        return None, []


def visible_devices(nvml: Any, count: int, visible: str | None) -> list[int]:
    """The physical NVML indices behind ``CUDA_VISIBLE_DEVICES``, in CUDA order.

    Entries are indices or (prefixes of) ``GPU-...`` UUIDs, as CUDA accepts them;
    like CUDA, the list stops at the first entry naming no device. Unset means all."""
    if visible is None:
        return list(range(count))
    uuids: list[str] | None = None
    out: list[int] = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit():
            index = int(entry)
        elif entry.startswith("GPU-"):
            if uuids is None:
                uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
            matches = [i for i, u in enumerate(uuids) if u.startswith(entry)]
            index = matches[0] if len(matches) == 1 else -1
        else:  # MIG-..., -1, empty: CUDA stops here
            index = -1
        if not 0 <= index < count or index in out:
            break
        out.append(index)
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _gpu_sample(nvml: Any, index: int, handle: Any) -> Iterable[tuple[str, float, dict]]:
    ctx = {"gpu": index}
    reads = (
        ("gpu_utilization_percent", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        ("gpu_memory_used_mib", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used / _MIB),
        ("gpu_memory_percent", lambda: _percent(nvml.nvmlDeviceGetMemoryInfo(handle))),
        ("gpu_temperature_c", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
        ("gpu_power_w", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
    )
    for name, read in reads:
        try:
            yield PREFIX + name, float(read()), ctx
        except Exception:  # NVMLError_NotSupported on some boards: leave that curve out
            continue


def _percent(memory: Any) -> float:
    return 100.0 * memory.used / memory.total if memory.total else 0.0


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # no disks / no network counters in some containers
        return None
