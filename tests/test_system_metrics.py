"""System metrics: one sampling thread per process, psutil for the host, NVML for GPUs."""

import logging
import threading
import time

import pytest

from runstore import Repo, Run
from runstore.tracking import system_metrics as sm
from runstore.errors import ConfigError


def test_short_interval_records_cpu_and_memory_curves(repo, caplog, monkeypatch):
    monkeypatch.delenv("RUNSTORE_SYSTEM_METRICS", raising=False)
    with caplog.at_level(logging.DEBUG, logger="runstore.system_metrics"):
        run = Run(repo, system_metrics=0.2)
        run.track(1.0, name="loss")
        watch = sm._watched[id(run)]
        deadline = time.monotonic() + 30  # generous: two shared cores
        while time.monotonic() < deadline and watch.samples < 3:
            time.sleep(0.05)
        run.close()
    stored = Repo(repo.path).get_run(run.id)
    names = {name for name, _ in stored.sequences()}
    assert {"system/cpu_percent", "system/memory_percent", "system/process_cpu_percent",
            "system/process_rss_mib", "loss"} <= names
    rss = stored.sequence("system/process_rss_mib")
    assert len(rss) >= 2 and all(10 < v < 100_000 for v in rss.values)  # MiB: a Python with numpy
    steps = list(rss.steps)
    assert steps == sorted(set(steps))  # wall-clock seconds since the start, never repeated
    assert all(0 <= v <= 100 for v in stored.sequence("system/memory_percent").values)
    assert not any(name.startswith("system/gpu") for name in names)  # no GPU here, and no complaint
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_one_thread_serves_every_run(repo):
    runs = [Run(repo, system_metrics=0.2) for _ in range(3)]
    try:
        time.sleep(0.3)
        threads = [t for t in threading.enumerate() if t.name == "runstore-system-metrics"]
        assert len(threads) == 1
    finally:
        for run in runs:
            run.close()
    assert not any(id(r) in sm._watched for r in runs)


def test_off_by_argument_and_environment(repo, monkeypatch):
    monkeypatch.setenv("RUNSTORE_SYSTEM_METRICS", "0")
    assert sm.interval_for(None) is None
    assert sm.interval_for(2) == 2.0  # an explicit argument wins
    monkeypatch.setenv("RUNSTORE_SYSTEM_METRICS", "30")
    assert sm.interval_for(None) == 30.0
    monkeypatch.delenv("RUNSTORE_SYSTEM_METRICS")
    assert sm.interval_for(None) == sm.DEFAULT_INTERVAL and sm.interval_for(False) is None
    run = Run(repo, system_metrics=False)
    assert id(run) not in sm._watched
    run.close()


@pytest.mark.parametrize("bad", [0, -1, "fast", float("nan")])
def test_a_bad_interval_is_refused_before_the_run_exists(repo, bad):
    with pytest.raises(ConfigError, match="system_metrics"):
        Run(repo, system_metrics=bad)
    assert repo.runs() == [] or len(repo.runs()) == 0


class _NVMLError(Exception):
    pass


class FakeNVML:
    """Four GPUs, as nvidia-ml-py's pynvml presents them."""
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, count=4, fail=False):
        self.count, self.fail = count, fail

    def nvmlInit(self):
        if self.fail:
            raise _NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-{handle[1]}{handle[1]}aa-0000"

    def nvmlDeviceGetUtilizationRates(self, handle):
        return type("U", (), {"gpu": 10 * handle[1]})

    def nvmlDeviceGetMemoryInfo(self, handle):
        return type("M", (), {"used": 512 * 1024 * 1024, "total": 2048 * 1024 * 1024})

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 60 + handle[1]

    def nvmlDeviceGetPowerUsage(self, handle):
        raise _NVMLError("Not Supported")  # some boards: that curve is left out


@pytest.mark.parametrize("visible,physical", [
    (None, [0, 1, 2, 3]),
    ("2,0", [2, 0]),
    ("GPU-33aa-0000,1", [3, 1]),
    ("GPU-1", [1]),                 # a unique UUID prefix is enough, as for CUDA
    ("1,7,2", [1]),                 # CUDA stops at the first entry naming no device
    ("", []),
    ("-1", []),
    ("MIG-abc", []),
])
def test_cuda_visible_devices_map_to_physical_devices(visible, physical):
    assert sm.visible_devices(FakeNVML(), 4, visible) == physical


def test_gpu_figures_per_visible_device():
    probe = sm.Probe(nvml=FakeNVML(), visible="2,0")
    gpu = [(name, value, ctx) for name, value, ctx in probe.sample() if name.startswith("system/gpu")]
    assert ("system/gpu_utilization_percent", 20.0, {"gpu": 0}) in gpu  # cuda:0 is physical GPU 2
    assert ("system/gpu_temperature_c", 60.0, {"gpu": 1}) in gpu
    assert ("system/gpu_memory_percent", 25.0, {"gpu": 0}) in gpu
    assert not [g for g in gpu if g[0] == "system/gpu_power_w"]


def test_a_missing_nvml_is_silent(caplog):
    with caplog.at_level(logging.INFO):
        probe = sm.Probe(nvml=FakeNVML(fail=True))
        sample = probe.sample()
    assert probe.gpus == [] and not any(name.startswith("system/gpu") for name, _, _ in sample)
    assert any(name == "system/cpu_percent" for name, _, _ in sample)
    assert not caplog.records
