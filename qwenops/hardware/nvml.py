"""Every NVML (pynvml / nvidia-ml-py) call qwenops makes, and nothing else.

Follows gpustat's nvml.py: initialise once and *store* the init error instead of raising it, read
each value on its own so one unsupported query (ECC on a GeForce card, power on some vGPUs) is a
`None` and not a failed probe, and turn GPU_IS_LOST into a `lost=True` device, a value doctor can
report. pynvml is imported here only, inside functions, so `qwenops --help` never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from qwenops.hardware.facts import GpuDevice, GpuFacts, GpuProcessFacts, impossible_memory
from qwenops.units import MIB

T = TypeVar("T")

_state: dict[str, Any] = {"initialized": False, "error": None}

# NVML's own words for "there is no driver here" are not what an operator searches for.
_INIT_MESSAGES = {
    "NVML Shared Library Not Found": "no NVIDIA driver found (NVML Shared Library Not Found)",
    "Driver Not Loaded": "the NVIDIA kernel driver is not loaded (NVML: Driver Not Loaded)",
}


def init() -> str | None:
    """Initialise NVML once per process; return the stored init error (None when it worked)."""
    if _state["initialized"] or _state["error"] is not None:
        return error_text()
    try:
        import pynvml
    except ImportError:
        _state["error"] = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        return error_text()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        text = str(exc)
        _state["error"] = _INIT_MESSAGES.get(text, f"NVML failed to start: {text}")
    else:
        _state["initialized"] = True
    return error_text()


def error_text() -> str | None:
    error = _state["error"]
    return None if error is None else str(error)


def _read(call: Callable[[], T]) -> T | None:
    """One NVML reading; NOT_SUPPORTED, NO_PERMISSION and friends become None."""
    import pynvml

    try:
        return call()
    except pynvml.NVMLError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _processes(handle: Any) -> tuple[GpuProcessFacts, ...]:
    import psutil
    import pynvml

    found: dict[int, GpuProcessFacts] = {}
    getters: tuple[Callable[[Any], list[Any]], ...] = (
        pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses,
    )
    for getter in getters:
        for proc in _read(partial(getter, handle)) or []:
            used = getattr(proc, "usedGpuMemory", None)
            try:
                name = psutil.Process(proc.pid).name()
            except (psutil.Error, OSError):
                name = "?"  # another container's pid, or it just exited
            found[proc.pid] = GpuProcessFacts(pid=proc.pid, name=name,
                                              used_memory_mib=used / MIB if isinstance(used, int) else None)
    return tuple(found.values())


def _device(index: int) -> GpuDevice:
    import pynvml

    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except pynvml.NVMLError as exc:
        lost = getattr(exc, "value", None) == pynvml.NVML_ERROR_GPU_IS_LOST
        return GpuDevice(index=index, lost=lost, error=str(exc))
    memory = _read(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
    if memory is not None and (not memory.total or impossible_memory(memory.total, memory.used, memory.free)):
        # A zero total, or more used/free than the total, is no reading: GpuDevice refuses such numbers
        # (from a hand-edited probe), and a driver that reports them must not end the probe.
        memory = None
    power = _read(lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
    limit = _read(lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    persistence = _read(lambda: pynvml.nvmlDeviceGetPersistenceMode(handle))
    ecc = _read(lambda: pynvml.nvmlDeviceGetCurrentEccMode(handle))
    pending = _read(lambda: pynvml.nvmlDeviceGetRetiredPagesPendingStatus(handle))
    cap = _read(lambda: pynvml.nvmlDeviceGetCudaComputeCapability(handle))
    name = _read(lambda: pynvml.nvmlDeviceGetName(handle))
    uuid = _read(lambda: pynvml.nvmlDeviceGetUUID(handle))
    return GpuDevice(
        index=index,
        name=_text(name) if name is not None else None,
        uuid=_text(uuid) if uuid is not None else None,
        memory_total_mib=memory.total / MIB if memory else None,
        memory_used_mib=memory.used / MIB if memory else None,
        memory_free_mib=memory.free / MIB if memory else None,
        temperature_gpu=_read(lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
        power_draw_w=power / 1000 if power is not None else None,
        power_limit_w=limit / 1000 if limit is not None else None,
        persistence_mode=bool(persistence) if persistence is not None else None,
        ecc_mode=bool(ecc) if ecc is not None else None,
        retired_pages_pending=bool(pending) if pending is not None else None,
        compute_cap=f"{cap[0]}.{cap[1]}" if cap else None,
        processes=_processes(handle),
    )


def cuda_version_text(value: int) -> str:
    """NVML's integer CUDA version (12040) as operators write it (12.4)."""
    return f"{value // 1000}.{value % 1000 // 10}"


def read_gpus() -> GpuFacts:
    """All GPUs as NVML sees them; no driver is a GpuFacts with init_error, never an exception."""
    error = init()
    if error is not None:
        return GpuFacts(init_error=error)
    import pynvml

    driver = _read(pynvml.nvmlSystemGetDriverVersion)
    cuda = _read(pynvml.nvmlSystemGetCudaDriverVersion)
    count = _read(pynvml.nvmlDeviceGetCount) or 0
    return GpuFacts(
        driver_version=_text(driver) if driver is not None else None,
        cuda_driver_version=cuda_version_text(cuda) if cuda else None,
        devices=tuple(_device(i) for i in range(count)),
    )
