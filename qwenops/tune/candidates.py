"""The candidates of a tuning run: the grid, pruned by the memory planner before anything starts, and the
order they run in.

Pruning says "cannot start" or "cannot serve this workload", never "probably slow": a candidate the
planner lets through is measured. On a GPU profile the verdict is qwenops.planner's (weights + activations
+ KV cache against the card); on the CPU engine vLLM sizes the KV cache from VLLM_CPU_KVCACHE_SPACE (or
--kv-cache-memory-bytes), so the check is that one max_model_len sequence fits in it, as vLLM checks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qwenops.tune.results import Candidate, CandidateResult, PlannedCandidate
from qwenops.tune.workload import Workload
from qwenops.untrusted import MAX_TUNE_CANDIDATES

if TYPE_CHECKING:
    from qwenops.config.profile import Profile
    from qwenops.hardware.facts import GpuDevice
    from qwenops.modelinfo import ModelConfig, ModelInfo

VLLM_DEFAULT_MAX_NUM_SEQS = 256  # vLLM's default when a profile leaves max_num_seqs unset (GPU, online serving)
GIB = 1024**3


@dataclass(frozen=True)
class Grid:
    max_num_seqs: tuple[int, ...]
    max_num_batched_tokens: tuple[int, ...]
    max_model_len: tuple[int, ...]

    def candidates(self) -> list[Candidate]:
        return [Candidate(max_num_seqs=s, max_num_batched_tokens=b, max_model_len=n)
                for s, b, n in itertools.product(self.max_num_seqs, self.max_num_batched_tokens, self.max_model_len)]


def next_power_of_two(value: int) -> int:
    return 1 << max(value - 1, 0).bit_length()


def profile_max_model_len(profile: Profile, config: ModelConfig | None) -> int:
    if profile.max_model_len is not None:
        return profile.max_model_len
    if config is not None:
        return config.rope_max_model_len or config.max_position_embeddings
    return 4096


def default_grid(profile: Profile, workload: Workload, config: ModelConfig | None, *,
                 max_num_seqs: Sequence[int] = (), max_num_batched_tokens: Sequence[int] = (),
                 max_model_len: Sequence[int] = ()) -> Grid:
    """The grid: the values given, else around the profile's own. max_num_seqs: half, same, double;
    max_num_batched_tokens: the profile's (else max(max_model_len, 2048)) and double; max_model_len: the
    profile's, and the smallest power of two that holds the workload's longest request when that is smaller
    (a shorter context lets the same KV cache hold more sequences)."""
    own_len = profile_max_model_len(profile, config)
    lens = tuple(max_model_len) or tuple(sorted({own_len, min(own_len, next_power_of_two(workload.longest_tokens))}))
    seqs_base = profile.max_num_seqs or VLLM_DEFAULT_MAX_NUM_SEQS
    seqs = tuple(max_num_seqs) or tuple(sorted({max(1, seqs_base // 2), seqs_base, seqs_base * 2}))
    batched_base = profile.max_num_batched_tokens or max(own_len, 2048)
    batched = tuple(max_num_batched_tokens) or (batched_base, batched_base * 2)
    grid = Grid(seqs, batched, lens)
    size = len(seqs) * len(batched) * len(lens)
    if size > MAX_TUNE_CANDIDATES:  # TuneOptions refuses it first, naming the flag; this holds for any caller
        from qwenops.errors import BadInputError

        raise BadInputError(f"the grid would have {size:,} candidates, more than {MAX_TUNE_CANDIDATES}",
                            field="--max-num-seqs", hint="give fewer values")
    return grid


@dataclass(frozen=True)
class PlanContext:
    """What the planner knows here: the model's architecture and weights, the GPU (GPU profiles), notes."""

    profile: Profile
    model: ModelInfo | None
    device: GpuDevice | None
    vllm_version: str | None
    notes: tuple[str, ...]


def plan_candidate(candidate: Candidate, context: PlanContext, workload: Workload) -> PlannedCandidate:
    """The planner's verdict on one candidate: does it start, and can it serve the workload at all."""
    profile = context.profile
    config = context.model.config if context.model is not None else None

    def pruned(reason: str, kv_tokens: int | None = None) -> PlannedCandidate:
        return PlannedCandidate(candidate=candidate, fits=False, reason=reason, kv_tokens=kv_tokens)

    seqs, batched, length = candidate.max_num_seqs, candidate.max_num_batched_tokens, candidate.max_model_len
    if batched < seqs:
        return pruned(f"max_num_batched_tokens {batched} < max_num_seqs {seqs}: vLLM refuses to start")
    need = workload.longest_tokens
    if need > length:
        return pruned(f"the workload's longest request needs up to {need} tokens > max_model_len {length}")
    allow_long = profile.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "0").strip().lower() in ("1", "true")
    if config is not None and not allow_long:
        limit = config.rope_max_model_len or config.max_position_embeddings
        if length > limit:
            return pruned(f"max_model_len {length} > the model's context of {limit} tokens: vLLM refuses to start")
    kv_tokens: int | None = None
    if profile.engine == "vllm":
        from qwenops.planner.inputs import plan_on_device

        trial = profile.model_copy(update=candidate.values())
        plan = plan_on_device(trial, context.model, context.device, context.vllm_version)
        if plan is not None:
            if not plan.fits:
                return pruned(f"{plan.verdict}: {plan.reason}", plan.kv_tokens)
            kv_tokens = plan.kv_tokens
    elif config is not None:
        kv_bytes, where = cpu_kv_cache_bytes(profile)
        if kv_bytes is not None:
            from qwenops.planner.memory import kv_bytes_per_token

            per_token = kv_bytes_per_token(config, profile.kv_cache_dtype)
            kv_tokens = kv_bytes // per_token // 16 * 16
            if length > kv_tokens:
                return pruned(f"max_len_exceeds_kv: {where} holds {kv_tokens} tokens of KV cache, less than one "
                              f"max_model_len {length} sequence: vLLM refuses to start", kv_tokens)
    predicted = float(seqs) if kv_tokens is None else round(min(float(seqs), kv_tokens / need), 2)
    reason = (f"fits: KV cache {kv_tokens} tokens, {predicted:g} requests of the workload at once"
              if kv_tokens is not None else "no memory plan here (nothing to prune it by)")
    return PlannedCandidate(candidate=candidate, fits=True, reason=reason, kv_tokens=kv_tokens,
                            predicted_concurrency=predicted)


def cpu_kv_cache_bytes(profile: Profile) -> tuple[int | None, str]:
    """The CPU engine's KV cache size: --kv-cache-memory-bytes in extra_args wins, else VLLM_CPU_KVCACHE_SPACE
    (GiB); (None, why) when neither is set (vLLM then sizes it from free RAM, which qwenops does not model)."""
    args = list(profile.extra_args)
    for index, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name == "--kv-cache-memory-bytes":
            text = value or (args[index + 1] if index + 1 < len(args) else "")
            try:
                return int(float(text)), f"--kv-cache-memory-bytes {text}"
            except ValueError:
                return None, "an unreadable --kv-cache-memory-bytes"
    space = profile.env.get("VLLM_CPU_KVCACHE_SPACE")
    if space:
        try:
            return int(float(space) * GIB), f"VLLM_CPU_KVCACHE_SPACE={space} GiB"
        except ValueError:
            return None, "an unreadable VLLM_CPU_KVCACHE_SPACE"
    return None, "no KV cache size set"


def plan_context(profile: Profile, state_dir: Path, probe_file: Path | None = None) -> PlanContext:
    """The model (its config.json: a local dir, the Hub cache or qwenops' catalog) and, for GPU profiles,
    the GPU: a probe file, this host's first GPU, else the smallest card the profile's requirements name."""
    from qwenops.errors import QwenopsError
    from qwenops.modelinfo import resolve_model
    from qwenops.render.vllm import model_path

    notes: list[str] = []
    try:
        model: ModelInfo | None = resolve_model(model_path(profile, state_dir))
    except QwenopsError as exc:
        model = None
        notes.append(f"no model facts, so no memory plan: {exc.one_line()}")
    device = None
    version = None
    if profile.engine == "vllm":
        device, where = _device(profile, probe_file)
        notes.append(where)
        version = _vllm_version()
    return PlanContext(profile, model, device, version, tuple(notes))


def _device(profile: Profile, probe_file: Path | None) -> tuple[GpuDevice | None, str]:
    from qwenops.hardware.facts import GpuDevice
    from qwenops.planner.inputs import first_usable_gpu

    if probe_file is not None:
        from qwenops.hardware.facts import load_facts

        found = first_usable_gpu(load_facts(probe_file).gpu.devices)
        if found is not None:
            return found, f"GPU: {found.name} from probe {probe_file}"
    else:
        from qwenops.hardware.nvml import read_gpus

        gpus = read_gpus()
        found = first_usable_gpu(gpus.devices)
        if found is not None:
            return found, f"GPU: {found.name} from NVML on this host"
    need = profile.requirements.min_gpu_memory_gib
    if need:
        device = GpuDevice(index=0, name=profile.requirements.gpu_name, memory_total_mib=need * 1024)
        return device, f"GPU total {need:g} GiB from profile {profile.name}'s requirements (no usable GPU here)"
    return None, "no GPU here and none in the profile's requirements: nothing prunes by memory"


def _vllm_version() -> str | None:
    from importlib import metadata

    for name in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _distance(a: Candidate, b: Candidate) -> float:
    return sum(abs(math.log2(x / y)) for x, y in (
        (a.max_num_seqs, b.max_num_seqs), (a.max_num_batched_tokens, b.max_num_batched_tokens),
        (a.max_model_len, b.max_model_len)))


def initial_order(planned: Sequence[PlannedCandidate], reference: Candidate) -> list[PlannedCandidate]:
    """Likely winners first, before anything is measured: nearest the profile's own (reviewed) values, then
    the one that the planner lets hold more of the workload at once."""
    return sorted(planned, key=lambda p: (_distance(p.candidate, reference), -(p.predicted_concurrency or 0.0),
                                          -p.candidate.max_num_batched_tokens))


def reorder(remaining: Sequence[PlannedCandidate], best: CandidateResult | None) -> list[PlannedCandidate]:
    """After a measurement: the candidates nearest the best so far run next, and among them those whose
    max_num_seqs is nearest the concurrency where its goodput peaked (the knee of its curve): more sequences
    than the knee only queue, fewer cap the goodput the best one already reached."""
    if best is None or best.best_concurrency is None:
        return list(remaining)
    knee = best.best_concurrency
    return sorted(remaining, key=lambda p: (abs(math.log2(p.candidate.max_num_seqs / knee)),
                                            _distance(p.candidate, best.candidate),
                                            -p.candidate.max_num_batched_tokens))
