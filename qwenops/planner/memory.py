"""Predict, before launch, what vLLM's v1 engine will do with GPU memory: does it start, how much KV.

vLLM sizes the KV cache in `Worker.determine_available_memory` (vllm/v1/worker/gpu_worker.py):
it loads the weights, runs `profile_run` (one forward pass of `max_num_batched_tokens` dummy
tokens, then `_dummy_sampler_run` on the last token of each of `min(max_num_seqs, tokens)`
requests), optionally profiles CUDA-graph capture, and gives the KV cache what is left of
`gpu_memory_utilization x total`. This module writes that accounting out (all sizes in GiB):

    budget      = gpu_memory_utilization x gpu_total
    weights     = checkpoint weights - cpu_offload_gb              (vLLM: "Model loading took X GiB")
    activation  = max(forward, sampler)                             (torch peak of profile_run)
      forward   = T x (3 x intermediate + 3 x hidden) x act_bytes   T = max_num_batched_tokens
      sampler   = R x vocab x 16 B + T x hidden x act_bytes         R = min(max_num_seqs, T);
                  v0 (< 0.8): act_bytes per logit instead of 16 B
    non_torch   = 0.35                                              (cuBLAS workspace, allocator slack)
    cudagraph   = C x (3 x intermediate + 3 x hidden) x act_bytes   C = min(2 x max_num_seqs, 512);
                  only when graphs are captured (not enforce_eager) and vLLM >= 0.21 counts them
    available   = budget - weights - activation - non_torch - cudagraph
    kv/token    = 2 (K and V) x layers x kv_heads x head_dim x kv_dtype_bytes
    kv_tokens   = floor(available / (16 x kv/token)) x 16           (blocks of 16 tokens)

Why each term has that shape: at the MLP's peak the gate_up projection (2 x intermediate), the
SiLU-and-multiply output (intermediate) and three hidden-sized tensors (residual, normed input,
attention output) are alive for every scheduled token; the forward pass's buffers are freed before
the sampler runs, so the peak is the larger of the two, not their sum. The sampler holds fp32
logits (4 B), top-k/top-p's sorted copy (4 B) and its int64 indices (8 B) per vocabulary entry.
Activations are in the model dtype whatever the weight quantization (AWQ/FP8 dequantize into bf16).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import field
from typing import Any, ClassVar, Literal

from qwenops.errors import BadInputError
from qwenops.modelinfo import ModelConfig, checkpoints_for
from qwenops.plainschema import Rule, RuleError, Schema, about, validation_error
from qwenops.units import GIB, MAX_GIB, MAX_TOKENS

BLOCK_SIZE = 16  # vLLM's default KV block size on CUDA (cache.block_size)
NON_TORCH_GIB = 0.35  # vLLM's "non_torch_memory" at TP=1 (no NCCL buffers): cuBLAS workspace + slack
SAMPLER_BYTES_PER_LOGIT = 16  # fp32 logits 4 + sorted values 4 + int64 sort indices 8
CUDAGRAPH_MAX_CAPTURE = 512  # vLLM's default ceiling for max_cudagraph_capture_size
# vLLM 0.8 made the v1 engine the default; 0.21 started counting CUDA-graph memory before sizing KV
# (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1). Unknown versions are planned as the current engine.
V1_SINCE = (0, 8)
CUDAGRAPH_ESTIMATE_SINCE = (0, 21)
CURRENT_VERSION = (0, 32)
# One representative per memory-accounting generation, for plans where the version is unknown.
ENGINE_GENERATIONS: tuple[tuple[tuple[int, int], str], ...] = (
    ((0, 7), "0.7"), ((0, 20), "0.20"), (CURRENT_VERSION, "0.32"),
)

Verdict = Literal["fits", "max_len_exceeds_model", "weights_dont_fit", "kv_cache_no_blocks", "max_len_exceeds_kv",
                  "insufficient_free_memory"]


# Frozen dataclasses validated as pydantic models were (qwenops.plainschema): planning costs no pydantic.
@dataclasses.dataclass(frozen=True, kw_only=True)
class GpuProcess(Schema):
    """A process holding GPU memory (from NVML)."""

    pid: int
    name: str
    used_gib: float | None = None


def _offload_at_most_the_weights(value: float | None, data: Mapping[str, Any]) -> float | None:
    weights = data.get("weights_gib")  # absent when it failed its own validation
    if value is not None and weights is not None and value > weights:
        raise RuleError(
            "offload_exceeds_weights",
            "{offload} GiB is more than the {weights} GiB of weights there are to offload",
            {"offload": f"{value:g}", "weights": f"{weights:g}",
             "hint": f"set cpu_offload_gb <= {weights:g}, or leave it unset"})
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanInput(Schema):
    """Everything the memory model depends on. `None` flags take vLLM's default for that GPU."""

    __schema_config__: ClassVar[dict[str, Any]] = {"allow_inf_nan": False}
    __rules__: ClassVar[dict[str, Rule]] = {"cpu_offload_gb": _offload_at_most_the_weights}

    config: ModelConfig
    weights_gib: float = field(metadata=about(gt=0, le=MAX_GIB))
    gpu_total_gib: float = field(metadata=about(gt=0, le=MAX_GIB))
    gpu_free_gib: float | None = field(default=None, metadata=about(ge=0, le=MAX_GIB))
    gpu_name: str = ""
    gpu_processes: tuple[GpuProcess, ...] = ()
    gpu_memory_utilization: float | None = field(default=None, metadata=about(gt=0, le=1))
    max_model_len: int | None = field(default=None, metadata=about(ge=1, le=MAX_TOKENS))
    max_num_seqs: int | None = field(default=None, metadata=about(ge=1, le=MAX_TOKENS))
    max_num_batched_tokens: int | None = field(default=None, metadata=about(ge=1, le=MAX_TOKENS))
    kv_cache_dtype: str | None = None
    enforce_eager: bool = False
    cpu_offload_gb: float | None = field(default=None, metadata=about(ge=0, le=MAX_GIB))
    # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 in the server's environment: vLLM then accepts a max_model_len
    # beyond the model's positions (with a warning) instead of refusing to start.
    allow_long_max_model_len: bool = False
    vllm_version: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan(Schema):
    """The predicted memory layout and the verdict. JSON keys per docs/architecture.md (the plan contract)."""

    fits: bool
    verdict: Verdict
    reason: str
    fix: str | None
    gpu_total_gib: float
    gpu_memory_utilization: float
    budget_gib: float
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cudagraph_gib: float
    available_kv_gib: float
    kv_bytes_per_token: int
    kv_tokens: int
    num_blocks: int
    max_model_len: int
    max_concurrency: float
    largest_max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    engine: str
    assumptions: tuple[str, ...]


def plan_input(values: dict[str, object]) -> PlanInput:
    """PlanInput from gathered values; the first invalid one is bad input naming its field."""
    try:
        return PlanInput.model_validate(values)
    except Exception as exc:
        invalid = validation_error(exc)
        if invalid is None:
            raise
        error = invalid.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        hint = (error.get("ctx") or {}).get("hint")
        if hint is not None:  # one of ours: the message already carries the numbers
            raise BadInputError(error["msg"], field=field, hint=str(hint)) from None
        raise BadInputError(f"{error['msg'].lower()} (got {error.get('input')!r})", field=field) from None


def parse_version(text: str | None) -> tuple[int, int]:
    if not text:
        return CURRENT_VERSION
    match = re.match(r"^(\d+)\.(\d+)", text)
    if not match:
        raise BadInputError(f"{text!r} is not a version like 0.11.2", field="vllm_version")
    return int(match.group(1)), int(match.group(2))


def kv_bytes_per_token(config: ModelConfig, kv_cache_dtype: str | None) -> int:
    """2 (K and V) x layers x KV heads x head_dim x bytes; fp8 KV stores one byte per value."""
    fp8 = bool(kv_cache_dtype) and str(kv_cache_dtype).startswith("fp8")
    value_bytes = 1 if fp8 else config.dtype_bytes
    return 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * value_bytes


def _defaults(inp: PlanInput, version: tuple[int, int], max_model_len: int) -> tuple[int, int, list[str]]:
    """vLLM's max_num_seqs / max_num_batched_tokens defaults (engine/arg_utils.py get_batch_defaults)."""
    notes: list[str] = []
    # PR #17885 kept A100s on the small defaults: larger batches lowered their throughput.
    large = inp.gpu_total_gib >= 70 and "a100" not in inp.gpu_name.lower()
    if version >= V1_SINCE:
        seqs = inp.max_num_seqs or (1024 if large else 256)
        huge = inp.gpu_total_gib >= 160  # B200/B300-class cards get the offline-sized token budget
        tokens = inp.max_num_batched_tokens or (16384 if huge else 8192 if large else 2048)
    else:
        # v0 prefilled whole prompts unless chunked prefill was on (its default above 32k context),
        # and then scheduled 512 tokens a step (v0 SchedulerConfig: "the best balance between ITL and TTFT").
        seqs = inp.max_num_seqs or 256
        tokens = inp.max_num_batched_tokens or (max(max_model_len, 2048) if max_model_len <= 32768 else 512)
    if inp.max_num_seqs is None:
        notes.append(f"max_num_seqs {seqs} (vLLM default for this GPU)")
    if inp.max_num_batched_tokens is None:
        notes.append(f"max_num_batched_tokens {tokens} (vLLM default for this GPU)")
    return seqs, tokens, notes


def plan(inp: PlanInput) -> Plan:
    """Run the memory model; see the module docstring for every formula.

    With no vllm_version the engine's defaults are unknown, and they differ a lot (v0 profiled a
    whole max_model_len prompt; v1 profiles max_num_batched_tokens; >= 0.21 also reserves CUDA-graph
    memory). A preflight must not promise KV cache it may not get, so an unknown version is planned
    as each engine generation and the one leaving the least KV cache is returned, saying which.
    """
    if inp.vllm_version is not None:
        return _plan_at(inp, parse_version(inp.vllm_version), inp.vllm_version)
    # Newest first, so that where generations agree the plan names the engine people run today.
    candidates = [_plan_at(inp, version, label) for version, label in reversed(ENGINE_GENERATIONS)]
    worst = min(candidates, key=lambda p: (p.kv_tokens, p.available_kv_gib))
    note = f"vLLM version unknown: planned as {worst.engine}, the generation leaving the least KV cache"
    return worst.model_copy(update={"assumptions": (note, *worst.assumptions)})


def _plan_at(inp: PlanInput, version: tuple[int, int], label: str) -> Plan:
    cfg = inp.config
    notes: list[str] = []
    util = inp.gpu_memory_utilization if inp.gpu_memory_utilization is not None else 0.9
    if inp.gpu_memory_utilization is None:
        notes.append("gpu_memory_utilization 0.9 (vLLM default)")
    max_model_len, refusal = _model_length(inp, notes)
    seqs, tokens, default_notes = _defaults(inp, version, max_model_len)
    notes += default_notes

    act_bytes = cfg.dtype_bytes
    per_token_forward = (3 * cfg.intermediate_size + 3 * cfg.hidden_size) * act_bytes
    forward = tokens * per_token_forward
    # v0's profiling sampler peaked at its model-dtype logits: in vllm#10517 the 35k-context start-up
    # (512 tokens, 256 sequences) peaked 0.06 GiB over the weights = 256 x 128256 x 2 B.
    per_logit = SAMPLER_BYTES_PER_LOGIT if version >= V1_SINCE else act_bytes
    sampler = min(seqs, tokens) * cfg.vocab_size * per_logit + tokens * cfg.hidden_size * act_bytes
    activation = max(forward, sampler) / GIB
    graphs = not inp.enforce_eager and version >= CUDAGRAPH_ESTIMATE_SINCE
    cudagraph = min(2 * seqs, CUDAGRAPH_MAX_CAPTURE) * per_token_forward / GIB if graphs else 0.0

    budget = util * inp.gpu_total_gib
    offload = inp.cpu_offload_gb or 0.0
    weights = max(inp.weights_gib - offload, 0.0)
    available = budget - weights - activation - NON_TORCH_GIB - cudagraph
    per_token = kv_bytes_per_token(cfg, inp.kv_cache_dtype)
    num_blocks = max(int(available * GIB) // (BLOCK_SIZE * per_token), 0)
    kv_tokens = num_blocks * BLOCK_SIZE

    verdict: Verdict = "fits"
    reason = (f"{kv_tokens:,} tokens of KV cache hold {kv_tokens / max_model_len:.2f} sequences of "
              f"max_model_len {max_model_len}")
    fix: str | None = None
    if refusal is not None:
        # vLLM checks this while building its config, before it loads a weight: nothing else matters.
        verdict = "max_len_exceeds_model"
        reason, fix = refusal
    elif weights > budget - NON_TORCH_GIB - activation:
        verdict = "weights_dont_fit"
        reason = (f"weights need {weights:.1f} GiB but gpu_memory_utilization {util:g} x {inp.gpu_total_gib:.1f} GiB "
                  f"leaves {budget - NON_TORCH_GIB - activation:.1f} GiB after activations")
        fix = _weights_fix(inp, budget - NON_TORCH_GIB - activation - cudagraph, max_model_len, per_token, offload)
    elif num_blocks == 0:
        verdict = "kv_cache_no_blocks"
        reason = f"no memory is left for KV cache blocks ({available:.2f} GiB after weights and activations)"
        fix = "raise gpu_memory_utilization, lower max_num_batched_tokens/max_num_seqs, or use a smaller checkpoint"
    elif kv_tokens < max_model_len:
        verdict = "max_len_exceeds_kv"
        reason = f"KV cache holds {kv_tokens:,} tokens, fewer than one max_model_len of {max_model_len:,}"
        fix = f"set max_model_len <= {kv_tokens} (or kv_cache_dtype fp8, or raise gpu_memory_utilization)"
    elif inp.gpu_free_gib is not None and inp.gpu_free_gib < budget:
        verdict = "insufficient_free_memory"
        holders = ", ".join(f"{p.name} (pid {p.pid}" + (f", {p.used_gib:.1f} GiB)" if p.used_gib else ")")
                            for p in inp.gpu_processes) or "unknown processes"
        reason = (f"only {inp.gpu_free_gib:.1f} GiB of {inp.gpu_total_gib:.1f} GiB is free, below the "
                  f"{budget:.1f} GiB that gpu_memory_utilization {util:g} asks for; held by {holders}")
        fix = (f"stop {holders}, or set gpu_memory_utilization <= "
               f"{math.floor(inp.gpu_free_gib / inp.gpu_total_gib * 100) / 100:.2f}")

    if graphs:
        notes.append(f"CUDA graphs captured up to batch {min(2 * seqs, CUDAGRAPH_MAX_CAPTURE)} (enforce_eager off)")
    engine = f"vLLM {label} ({'v1' if version >= V1_SINCE else 'v0'} engine)"
    return Plan(
        fits=verdict == "fits", verdict=verdict, reason=reason, fix=fix,
        gpu_total_gib=round(inp.gpu_total_gib, 2), gpu_memory_utilization=util, budget_gib=round(budget, 3),
        weights_gib=round(weights, 3), activation_gib=round(activation, 3), non_torch_gib=NON_TORCH_GIB,
        cudagraph_gib=round(cudagraph, 3), available_kv_gib=round(available, 3), kv_bytes_per_token=per_token,
        kv_tokens=kv_tokens, num_blocks=num_blocks, max_model_len=max_model_len,
        max_concurrency=round(kv_tokens / max_model_len, 2), largest_max_model_len=kv_tokens,
        max_num_seqs=seqs, max_num_batched_tokens=tokens, engine=engine, assumptions=tuple(notes),
    )


def _model_length(inp: PlanInput, notes: list[str]) -> tuple[int, tuple[str, str] | None]:
    """The max_model_len to plan (vLLM's default: the model's derived length), and (reason, fix) when
    vLLM refuses it for exceeding the model's positions (config.py _get_and_verify_max_len)."""
    cfg = inp.config
    limit = cfg.derived_max_model_len
    limit_text = (f"max_position_embeddings {cfg.max_position_embeddings}" if cfg.rope_max_model_len is None
                  else f"max_position_embeddings {cfg.max_position_embeddings} as rope_scaling stretches it, "
                       f"{limit}")
    if inp.max_model_len is None:
        notes.append(f"max_model_len {limit} (the model's {limit_text})")
        return limit, None
    if inp.max_model_len <= limit:
        return inp.max_model_len, None
    if inp.allow_long_max_model_len:
        notes.append(f"max_model_len {inp.max_model_len} > the model's {limit_text}: vLLM accepts it only "
                     "because VLLM_ALLOW_LONG_MAX_MODEL_LEN=1, and outputs past that length may be wrong")
        return inp.max_model_len, None
    return inp.max_model_len, (
        f"max_model_len {inp.max_model_len:,} is more than the model's {limit_text}; vLLM refuses to start",
        f"set max_model_len <= {limit} (only if you accept wrong outputs past it: "
        "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 in the profile's env)",
    )


def _weights_fix(inp: PlanInput, room_gib: float, max_model_len: int, per_token: int, offload: float) -> str:
    """Name the quantized checkpoints that would fit, then the CPU-offload amount that would."""
    one_sequence = max_model_len * per_token / GIB
    parts: list[str] = []
    fitting = [f"{repo} ({gib:.1f} GiB)" for repo, gib in checkpoints_for(inp.config).items()
               if gib + one_sequence <= room_gib]
    if fitting:
        parts.append("use a quantized checkpoint that fits: " + ", ".join(fitting))
    needed = math.ceil(inp.weights_gib - offload - (room_gib - one_sequence)) + offload
    if needed < inp.weights_gib:
        parts.append(f"or set cpu_offload_gb {needed:g} (slow: every step streams it over PCIe)")
    else:
        parts.append("no cpu_offload_gb helps: activations and one sequence of KV cache alone exceed the budget; "
                     "use a larger GPU or lower max_num_batched_tokens and max_model_len")
    return "; ".join(parts)
