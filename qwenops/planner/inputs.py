"""Gathering the planner's inputs: the profile's flags, the model, the GPU (flag, probe file or NVML).

The memory model itself is pure (qwenops.planner.memory); what reads a profile or the GPU lives here,
and `plan` (qwenops/plan/run.py, which also reads a model directory, a config.json or a probe file),
`doctor`, `serve --auto-fit` and `tune` build their PlanInput through these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
