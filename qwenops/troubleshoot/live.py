"""Evidence from a live server (`/health`, `/v1/models`, `/metrics`) and from the host it runs on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from qwenops.errors import BadInputError, UnreachableError
from qwenops.vllmmetrics import MetricsFormatError, Snapshot, parse

TOP_PROCESSES = 5


@dataclass(frozen=True)
class ServerEvidence:
    base_url: str
    health_status: int | None  # None: /health did not answer at all
    models: tuple[str, ...]
    metrics: Snapshot | None
    metrics_error: str | None = None


def read_server(base_url: str, *, api_key: str | None = None, timeout_s: float = 5.0) -> ServerEvidence:
    """Scrape one server. Unreachable is exit 3; a reachable URL that is not vLLM is bad input (exit 2)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers) as client:
            try:
                health: int | None = client.get("/health").status_code
            except httpx.TimeoutException:
                health = None  # a server too busy to answer /health is evidence, not a failure to connect
            models_answer = client.get("/v1/models")
            metrics_answer = client.get("/metrics")
    except httpx.ConnectError as exc:
        raise UnreachableError(f"nothing answers at {base_url} ({exc})", field="--base-url",
                               hint="is the server running? `qwenops serve` or `systemctl status`") from None
    except httpx.HTTPError as exc:
        raise UnreachableError(f"{base_url}: {type(exc).__name__}: {exc}", field="--base-url") from None
    except httpx.InvalidURL as exc:
        raise BadInputError(f"{base_url!r} is not a URL ({exc})", field="--base-url") from None
    models: tuple[str, ...] = ()
    if models_answer.status_code == 200:
        try:
            models = tuple(str(m.get("id")) for m in models_answer.json().get("data", []) if isinstance(m, dict))
        except (ValueError, AttributeError):
            models = ()
    snapshot, problem = None, None
    if metrics_answer.status_code == 200:
        try:
            snapshot = parse(metrics_answer.text)
        except MetricsFormatError as exc:
            problem = f"/metrics is not Prometheus text: {exc}"
    else:
        problem = f"/metrics answered HTTP {metrics_answer.status_code}"
    if health == 404 and (snapshot is None or not snapshot.is_vllm):
        raise BadInputError(f"{base_url} is not a vLLM server (no /health, no vllm: metrics)", field="--base-url")
    return ServerEvidence(base_url, health, models, snapshot, problem)


def scrape_metrics(base_url: str, *, timeout_s: float = 5.0) -> Snapshot:
    """One scrape of /metrics alone (a repeated reading: not /health and /v1/models each time)."""
    import httpx

    try:
        answer = httpx.get(base_url + "/metrics", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise UnreachableError(f"{base_url}/metrics stopped answering: {exc}", field="--base-url") from None
    try:
        return parse(answer.text)
    except MetricsFormatError as exc:
        raise UnreachableError(f"{base_url}/metrics is not Prometheus text: {exc}", field="--base-url") from None


@dataclass(frozen=True)
class BusyProcess:
    pid: int
    name: str
    cpu_percent: float  # of one core


@dataclass(frozen=True)
class HostEvidence:
    cpu_count: int
    load_1m: float | None
    cpu_busy_percent: float  # all cores, sampled over the interval
    steal_percent: float | None  # a VM's CPU taken by the hypervisor
    busiest: tuple[BusyProcess, ...]
    ram_available_gib: float
    ram_total_gib: float
    swap_used_gib: float
    gpu_error: str | None
    gpu_processes: tuple[tuple[int, str, float | None], ...] = field(default_factory=tuple)  # pid, name, MiB
    gpu_memory_used_mib: float | None = None
    gpu_memory_total_mib: float | None = None


def read_host(sample_s: float = 0.5) -> HostEvidence:
    """CPU contention (load, steal, the busiest processes), memory pressure and the GPU's other users."""
    import psutil

    from qwenops.hardware.nvml import read_gpus
    from qwenops.units import GIB

    processes = list(psutil.process_iter(["pid", "name"]))
    for process in processes:
        try:
            process.cpu_percent(None)  # the first call starts the process's sample
        except psutil.Error:
            continue
    times = psutil.cpu_times_percent(interval=sample_s)
    busy: list[BusyProcess] = []
    for process in processes:
        try:
            percent = process.cpu_percent(None)
        except psutil.Error:
            continue
        if percent > 0 and process.pid != os.getpid():
            busy.append(BusyProcess(process.pid, process.info.get("name") or "?", percent))
    busy.sort(key=lambda p: p.cpu_percent, reverse=True)
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    gpus = read_gpus()
    device = next((d for d in gpus.devices if not d.lost), None)
    gpu_processes = tuple((p.pid, p.name, p.used_memory_mib) for p in device.processes) if device else ()
    return HostEvidence(
        cpu_count=psutil.cpu_count() or 1, load_1m=load, cpu_busy_percent=100.0 - times.idle,
        steal_percent=getattr(times, "steal", None), busiest=tuple(busy[:TOP_PROCESSES]),
        ram_available_gib=memory.available / GIB, ram_total_gib=memory.total / GIB, swap_used_gib=swap.used / GIB,
        gpu_error=gpus.init_error, gpu_processes=gpu_processes,
        gpu_memory_used_mib=device.memory_used_mib if device else None,
        gpu_memory_total_mib=device.memory_total_mib if device else None,
    )

