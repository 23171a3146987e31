"""Gathering the planner's inputs: the profile's flags, the model, the GPU (flag, probe file or NVML).

The memory model itself is pure (qwenops.planner.memory); everything that reads a file, a profile or
the GPU lives here, and `plan` and `doctor` both build their PlanInput through these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwenops.errors import BadInputError
from qwenops.modelinfo import ModelInfo
from qwenops.planner.memory import GpuProcess, Plan, plan, plan_input
from qwenops.units import mib_to_gib

if TYPE_CHECKING:
    from qwenops.config.profile import Profile
    from qwenops.hardware.facts import GpuDevice


# The profile fields the memory model reads; everything else in a profile leaves memory alone.
FLAG_FIELDS = ("gpu_memory_utilization", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
               "kv_cache_dtype", "enforce_eager", "cpu_offload_gb")


def profile_flags(profile: Profile) -> dict[str, object]:
    """The profile's memory-relevant flags, as PlanInput fields."""
    flags: dict[str, object] = {field: getattr(profile, field) for field in FLAG_FIELDS}
    # vLLM reads it as "1" or "true", any case (vllm/envs.py).
    allow = profile.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "0").strip().lower() in ("1", "true")
    flags["allow_long_max_model_len"] = allow
    return flags


def first_usable_gpu(devices: tuple[GpuDevice, ...]) -> GpuDevice | None:
    """The GPU a one-GPU plan is made for: the first one that is not lost and reports its memory."""
    return next((d for d in devices if not d.lost and d.memory_total_mib), None)


def gpu_inputs(device: GpuDevice, *, with_free_memory: bool = True) -> dict[str, object]:
    """PlanInput fields for DEVICE (MiB as NVML reports them -> GiB); free memory and its holders only
    when asked (doctor reports those in a check of their own)."""
    assert device.memory_total_mib is not None  # first_usable_gpu guarantees it
    values: dict[str, object] = {"gpu_total_gib": mib_to_gib(device.memory_total_mib), "gpu_name": device.name or ""}
    if with_free_memory:
        values["gpu_free_gib"] = mib_to_gib(device.memory_free_mib) if device.memory_free_mib is not None else None
        values["gpu_processes"] = tuple(
            GpuProcess(pid=p.pid, name=p.name,
                       used_gib=mib_to_gib(p.used_memory_mib) if p.used_memory_mib else None)
            for p in device.processes)
    return values


def plan_on_device(profile: Profile, model: ModelInfo | None, device: GpuDevice | None,
                   vllm_version: str | None) -> Plan | None:
    """The profile's plan on DEVICE's total memory, or None when there is nothing to plan with
    (no GPU, no weight size, or a tensor-parallel profile: the planner models one GPU)."""
    if (profile.tensor_parallel_size or 1) > 1:
        return None
    if device is None or model is None or model.weights_gib is None:
        return None
    return plan(plan_input({"config": model.config, "weights_gib": model.weights_gib, "vllm_version": vllm_version,
                            **gpu_inputs(device, with_free_memory=False), **profile_flags(profile)}))


def fit_batch(profile: Profile, model: ModelInfo | None, device: GpuDevice | None,
               vllm_version: str | None = None) -> dict[str, object] | None:
    """The largest batch (max_num_batched_tokens, then max_num_seqs, halved in turn) whose plan fits on
    DEVICE: auto-fit's change after "No available memory for the cache blocks". Activations of one
    full batch take what the KV cache needed; a smaller batch gives it back. None when nothing fits
    or there is nothing to plan with."""
    first = plan_on_device(profile, model, device, vllm_version)
    if first is None:
        return None
    batched, seqs = first.max_num_batched_tokens, first.max_num_seqs
    while batched > 1 or seqs > 1:
        if batched >= seqs * 2 and batched > 256:
            batched //= 2  # activations scale with the tokens of one step: the bigger lever first
        elif seqs > 1:
            seqs //= 2
        else:
            break
        trial = profile.model_copy(update={"max_num_batched_tokens": max(batched, seqs), "max_num_seqs": seqs})
        result = plan_on_device(trial, model, device, vllm_version)
        if result is not None and result.fits:
            return {"max_num_batched_tokens": max(batched, seqs), "max_num_seqs": seqs}
    return None


def plan_request(
    *,
    profile_name: str | None = None,
    model_dir: str | None = None,
    model_config: str | None = None,
    weights_gib: float | None = None,
    gpu_total_gib: float | None = None,
    probe_file: str | None = None,
    vllm_version: str | None = None,
    overrides: dict[str, object] | None = None,
) -> Plan:
    """`qwenops plan`: gather model, GPU and flags (CLI > profile > vLLM default), then `plan()`."""
    from qwenops.config.loader import load_profile

    if model_dir and model_config:
        raise BadInputError("--model and --model-config both name the model to plan", field="model, model-config",
                            hint="pass one: --model DIR for a model directory, "
                                 "or --model-config FILE with --weights-gib")
    flags: dict[str, object] = {}
    profile: Profile | None = None
    if profile_name or not (model_dir or model_config):
        profile = load_profile(profile_name)
        if profile.engine != "vllm":
            raise BadInputError(f"profile {profile.name!r} runs on the {profile.engine} engine; plan models GPU memory",
                                field="profile", hint="pass a GPU profile such as 4090d")
        flags = profile_flags(profile)
        if (profile.tensor_parallel_size or 1) > 1:
            raise BadInputError(f"profile {profile.name!r} sets tensor_parallel_size {profile.tensor_parallel_size}; "
                                "plan models one GPU", field="tensor_parallel_size", hint="plan TP=1 profiles")
    # False is "flag not given" for --enforce-eager, so it must not override a profile's True.
    flags.update({k: v for k, v in (overrides or {}).items() if v is not None and v is not False})

    model = _model(profile, model_dir, model_config, weights_gib)
    weights = weights_gib if weights_gib is not None else model.weights_gib
    if weights is None:
        raise BadInputError(f"no weights found in {model.source}", field="weights-gib", hint="pass --weights-gib W")
    gpu, notes = _gpu(profile, gpu_total_gib, probe_file)
    if vllm_version is None:
        from importlib import metadata

        try:
            vllm_version = metadata.version("vllm")
        except metadata.PackageNotFoundError:
            vllm_version = None
    inp = plan_input({"config": model.config, "weights_gib": weights, "vllm_version": vllm_version, **gpu, **flags})
    result = plan(inp)
    return result.model_copy(update={"assumptions": (*notes, *result.assumptions)})


def _model(profile: Profile | None, model_dir: str | None, model_config: str | None,
           weights_gib: float | None) -> ModelInfo:
    from pathlib import Path

    from qwenops.modelinfo import inspect_model_dir, read_config, resolve_model

    if model_config:
        if weights_gib is None:
            raise BadInputError("--model-config needs --weights-gib (the GiB of weights vLLM loads)",
                                field="weights-gib")
        config = read_config(Path(model_config), field="model-config",
                             hint="pass a model's config.json, as its Hugging Face repo has it")
        return ModelInfo(source=model_config, config=config, weights_gib=weights_gib)
    if model_dir:
        return inspect_model_dir(Path(model_dir))
    if profile is None:
        raise BadInputError("no model to plan", field="model", hint="pass --profile, --model or --model-config")
    return resolve_model(profile.model)


def _gpu(profile: Profile | None, total: float | None, probe_file: str | None) -> tuple[dict[str, object], list[str]]:
    """The GPU to plan on: --gpu-total-gib, else a probe file, else this host's GPU (NVML), else the
    profile's requirements.min_gpu_memory_gib (the smallest card the profile claims to fit)."""
    from pathlib import Path

    if total is not None and probe_file:
        raise BadInputError("--gpu-total-gib and --probe-file both name the GPU to plan on",
                            field="gpu-total-gib, probe-file", hint="pass one of them")
    if total is not None:
        return {"gpu_total_gib": total}, []
    from qwenops.hardware.facts import load_facts

    if probe_file:
        gpus = load_facts(Path(probe_file)).gpu
    else:
        from qwenops.hardware.nvml import read_gpus

        gpus = read_gpus()
    device = first_usable_gpu(gpus.devices)
    if device is not None:
        where = f"probe {probe_file}" if probe_file else "NVML on this host"
        return gpu_inputs(device), [f"GPU: {device.name} from {where}"]
    if profile is not None and profile.requirements.min_gpu_memory_gib:
        need = profile.requirements.min_gpu_memory_gib
        return {"gpu_total_gib": need}, [f"GPU total {need:g} GiB from profile {profile.name}'s requirements "
                                         f"({gpus.init_error or 'no usable GPU here'})"]
    raise BadInputError("no GPU here to read its memory from", field="gpu-total-gib",
                        hint="pass --gpu-total-gib G or --probe-file FACTS.json")
