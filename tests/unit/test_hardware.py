"""Probes: NVML through a fake pynvml (init error stored, unsupported -> None, lost GPU is a value),
host facts on this machine, and recorded facts round-tripping through JSON."""

from __future__ import annotations

import os
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qwenops.errors import BadInputError
from qwenops.hardware import nvml
from qwenops.hardware.facts import GpuDevice, HostFacts, load_facts
from qwenops.hardware.host import LiveProbe, port_status, software_facts

MIB = 1024**2
GPU_IS_LOST = 15
NOT_SUPPORTED = 3


class NVMLError(Exception):
    def __init__(self, value: int, text: str = "") -> None:
        super().__init__(text or f"NVML error {value}")
        self.value = value


def fake_pynvml(*, init_error: str | None = None, lost: bool = False, cuda: int = 12040) -> types.ModuleType:
    """The slice of pynvml that nvml.py uses, shaped like a GeForce card (no ECC, no retired pages)."""
    mod = types.ModuleType("pynvml")
    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.NVML_ERROR_GPU_IS_LOST = GPU_IS_LOST  # type: ignore[attr-defined]
    mod.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]

    def init() -> None:
        if init_error:
            raise NVMLError(12, init_error)

    def unsupported(*_: Any) -> Any:
        raise NVMLError(NOT_SUPPORTED, "Not Supported")

    def handle(index: int) -> str:
        if lost:
            raise NVMLError(GPU_IS_LOST, "GPU is lost")
        return f"h{index}"

    proc = types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=512 * MIB)
    funcs: dict[str, Any] = {
        "nvmlInit": init,
        "nvmlSystemGetDriverVersion": lambda: "550.54.15",
        "nvmlSystemGetCudaDriverVersion": lambda: cuda,
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": handle,
        "nvmlDeviceGetName": lambda h: b"NVIDIA GeForce RTX 4090 D",
        "nvmlDeviceGetUUID": lambda h: "GPU-1",
        "nvmlDeviceGetMemoryInfo": lambda h: types.SimpleNamespace(total=24564 * MIB, used=420 * MIB,
                                                                    free=24144 * MIB),
        "nvmlDeviceGetTemperature": lambda h, kind: 34,
        "nvmlDeviceGetPowerUsage": lambda h: 21500,
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: 425000,
        "nvmlDeviceGetPersistenceMode": lambda h: 1,
        "nvmlDeviceGetCurrentEccMode": unsupported,
        "nvmlDeviceGetRetiredPagesPendingStatus": unsupported,
        "nvmlDeviceGetCudaComputeCapability": lambda h: (8, 9),
        "nvmlDeviceGetComputeRunningProcesses": lambda h: [proc],
        "nvmlDeviceGetGraphicsRunningProcesses": unsupported,
    }
    for name, func in funcs.items():
        setattr(mod, name, func)
    return mod


@pytest.fixture
def use_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def install(**kwargs: Any) -> None:
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(**kwargs))
        monkeypatch.setattr(nvml, "_state", {"initialized": False, "error": None})

    yield install


def test_a_working_gpu(use_fake: Any) -> None:
    use_fake()
    gpus = nvml.read_gpus()
    assert gpus.init_error is None
    assert (gpus.driver_version, gpus.cuda_driver_version) == ("550.54.15", "12.4")
    device = gpus.devices[0]
    assert device.name == "NVIDIA GeForce RTX 4090 D" and device.memory_total_mib == 24564
    assert device.power_draw_w == 21.5 and device.persistence_mode is True and device.compute_cap == "8.9"
    # GeForce: ECC and retired pages are NOT_SUPPORTED, which is None, not False and not an error.
    assert device.ecc_mode is None and device.retired_pages_pending is None
    assert [(p.pid, p.used_memory_mib) for p in device.processes] == [(os.getpid(), 512)]
    assert device.processes[0].name not in ("", "?")


def test_no_driver_is_a_stored_error_with_a_plain_reason(use_fake: Any) -> None:
    use_fake(init_error="NVML Shared Library Not Found")
    first = nvml.read_gpus()
    assert first.init_error == "no NVIDIA driver found (NVML Shared Library Not Found)"
    assert first.devices == ()
    assert nvml.read_gpus().init_error == first.init_error  # stored, not retried and not raised


def test_a_lost_gpu_is_a_value(use_fake: Any) -> None:
    use_fake(lost=True)
    device = nvml.read_gpus().devices[0]
    assert device.lost is True and device.error == "GPU is lost"


@pytest.mark.parametrize(("value", "text"), [(12040, "12.4"), (12020, "12.2"), (11080, "11.8"), (13000, "13.0")])
def test_cuda_driver_version_text(value: int, text: str) -> None:
    assert nvml.cuda_version_text(value) == text


# What an operator reads when NVML cannot start, by cause; any other NVML error keeps NVML's words.
NO_NVML_CAUSES = (
    "no NVIDIA driver found (NVML Shared Library Not Found)",
    "the NVIDIA kernel driver is not loaded (NVML: Driver Not Loaded)",
    "nvidia-ml-py is not installed (pip install nvidia-ml-py)",
)


def round_trips(facts: HostFacts, tmp_path: Path) -> None:
    saved = tmp_path / "facts.json"
    saved.write_text(facts.to_json())
    assert load_facts(saved) == facts
    assert HostFacts.model_validate_json(saved.read_text()).software.python == facts.software.python


def test_live_probe_on_this_host_round_trips(tmp_path: Path) -> None:
    facts = LiveProbe().collect(data_dir=tmp_path / "not-yet" / "model", host="127.0.0.1", port=8000)
    assert facts.host.ram_total_gib > 0 and facts.host.cpu_count >= 1
    assert facts.host.data_disk is not None and facts.host.data_disk.total_gib > 0
    gpu = facts.gpu
    if gpu.init_error is None:  # NVML started: it reads this host's GPUs, each with a name
        assert gpu.devices and all(d.name for d in gpu.devices if not d.lost), gpu
    else:  # no NVML here: the cause is named, and no driver, CUDA version or device is made up
        assert gpu.init_error in NO_NVML_CAUSES or gpu.init_error.startswith("NVML failed to start: "), gpu
        assert (gpu.driver_version, gpu.cuda_driver_version, gpu.devices) == (None, None, ())
    round_trips(facts, tmp_path)


def test_live_probe_reads_the_gpus_from_nvml(use_fake: Any, tmp_path: Path) -> None:
    use_fake()
    facts = LiveProbe().collect(data_dir=tmp_path, host="127.0.0.1", port=8000)
    assert facts.gpu.init_error is None
    assert (facts.gpu.driver_version, facts.gpu.cuda_driver_version) == ("550.54.15", "12.4")
    devices = [(d.index, d.name, d.memory_total_mib) for d in facts.gpu.devices]
    assert devices == [(0, "NVIDIA GeForce RTX 4090 D", 24564)]
    round_trips(facts, tmp_path)


def test_live_probe_without_a_driver_names_the_cause_and_no_devices(use_fake: Any, tmp_path: Path) -> None:
    use_fake(init_error="Driver Not Loaded")
    facts = LiveProbe().collect(data_dir=tmp_path, host="127.0.0.1", port=8000)
    assert facts.gpu.init_error == "the NVIDIA kernel driver is not loaded (NVML: Driver Not Loaded)"
    assert (facts.gpu.driver_version, facts.gpu.cuda_driver_version, facts.gpu.devices) == (None, None, ())
    round_trips(facts, tmp_path)


def test_an_unknown_nvml_init_error_keeps_nvmls_words(use_fake: Any) -> None:
    use_fake(init_error="Insufficient Permissions")
    gpus = nvml.read_gpus()
    assert gpus.init_error == "NVML failed to start: Insufficient Permissions" and gpus.devices == ()


def test_without_nvidia_ml_py_the_cause_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    monkeypatch.setattr(nvml, "_state", {"initialized": False, "error": None})
    gpus = nvml.read_gpus()
    assert gpus.init_error == "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    assert gpus.devices == () and gpus.driver_version is None


def test_software_versions_come_from_metadata_without_importing_engines() -> None:
    before = {m for m in ("torch", "vllm", "transformers") if m in sys.modules}
    sw = software_facts()
    assert sw.python.count(".") == 2
    assert {m for m in ("torch", "vllm", "transformers") if m in sys.modules} == before
    if sw.torch is not None and "+cpu" in sw.torch:
        assert sw.torch_cuda is None


def test_a_taken_port_is_reported_with_its_holder() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        facts = port_status("127.0.0.1", port)
        assert facts.free is False
        if facts.holder_pid is not None:  # psutil may not see other users' sockets without root
            assert facts.holder_pid == os.getpid()
    assert port_status("127.0.0.1", port).free is True


def test_wrong_schema_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"schema": "gpustat/1"}')
    with pytest.raises(BadInputError) as err:
        load_facts(path)
    assert err.value.field == "probe-file.schema"


def test_a_zero_memory_total_is_no_reading_not_a_crash(use_fake: Any) -> None:
    use_fake()
    sys.modules["pynvml"].nvmlDeviceGetMemoryInfo = (  # type: ignore[attr-defined]
        lambda h: types.SimpleNamespace(total=0, used=0, free=0))
    device = nvml.read_gpus().devices[0]
    assert device.memory_total_mib is None and device.memory_free_mib is None


def test_memory_numbers_nvml_could_not_report_are_no_reading(use_fake: Any) -> None:
    use_fake()
    sys.modules["pynvml"].nvmlDeviceGetMemoryInfo = (  # type: ignore[attr-defined]
        lambda h: types.SimpleNamespace(total=24564 * MIB, used=420 * MIB, free=10**7 * MIB))
    device = nvml.read_gpus().devices[0]
    assert device.memory_total_mib is None and device.memory_free_mib is None


def test_used_plus_free_below_the_total_is_fine_nvml_reserves_some() -> None:
    # nvmlMemory_v2 reports reserved memory apart: used + free + reserved = total.
    device = GpuDevice(index=0, memory_total_mib=24564, memory_used_mib=12, memory_free_mib=24100)
    assert device.memory_free_mib == 24100
    with pytest.raises(ValidationError, match="36,100 MiB, more than the card's memory_total_mib 24,564"):
        GpuDevice(index=0, memory_total_mib=24564, memory_used_mib=12000, memory_free_mib=24100)
