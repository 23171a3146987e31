"""Profile -> qwenops.service (a hardened Type=notify unit running `qwenops serve`) and its env file.

Layers: qwenops restarts vLLM (backoff, then FATAL: exit 1); systemd restarts qwenops after that
(Restart=on-failure, RestartSec = the supervisor's longest backoff) and gives up after the same
number of failures the supervisor allows. qwenops tells systemd when it is ready (READY=1 after
/health and /v1/models), feeds the watchdog only while the server is healthy, and drains vLLM on
SIGTERM before it ends the process group; KillMode=mixed leaves that to qwenops and SIGKILLs
whatever is left afterwards, so an orphaned EngineCore never keeps the VRAM.

Hardening follows the GPU service modules of nixpkgs (ollama, wyoming-faster-whisper), which run
CUDA under DevicePolicy=closed with the NVIDIA devices allowed; never PrivateDevices (it hides
/dev/nvidia*) and never MemoryDenyWriteExecute (Triton and torch.compile write and run kernels).
Every directive carries a one-line comment saying why.
"""

from __future__ import annotations

from qwenops.config.profile import Profile
from qwenops.render.deploy import (
    ENV_FILE,
    GATEWAY_DRAIN_S,
    GATEWAY_PORT,
    GATEWAY_STOP_S,
    NOFILE,
    QWENOPS_BIN,
    SERVICE_USER,
    budgets,
    check_executable,
    comments,
    header,
    require_gpu_engine,
)
from qwenops.render.emit import file_text, systemd_exec, systemd_line, systemd_text

UNIT_NAME = "qwenops.service"

# (comment, directive) pairs; a comment applies to the directive below it.
_HARDENING: tuple[tuple[str, str], ...] = (
    ("No device but the standard pseudo-devices and the NVIDIA devices below.", "DevicePolicy=closed"),
    ("/dev/nvidia0..N and /dev/nvidiactl (major 195; /proc/devices names it one of these by driver).",
     "DeviceAllow=char-nvidia-frontend rw"),
    ("/dev/nvidiactl, where the driver names its major so.", "DeviceAllow=char-nvidiactl rw"),
    ("/dev/nvidia-uvm and -tools: CUDA's unified memory; without them CUDA finds no device.",
     "DeviceAllow=char-nvidia-uvm rw"),
    ("/dev/nvidia-caps/*: MIG and capability devices.", "DeviceAllow=char-nvidia-caps rw"),
    ("No setuid gains (nvidia-modprobe runs above, as root, instead).", "NoNewPrivileges=yes"),
    ("No capabilities: qwenops and vLLM need none.", "CapabilityBoundingSet="),
    ("And none handed to the processes either.", "AmbientCapabilities="),
    ("The whole file system read-only, but the State/Cache directories and /tmp.", "ProtectSystem=strict"),
    ("/home, /root and /run/user hidden: install qwenops outside them (/opt/qwenops).", "ProtectHome=yes"),
    ("A private /tmp (torch's inductor and vLLM's IPC sockets live there).", "PrivateTmp=yes"),
    ("A user namespace: root on the host is nobody here (CUDA needs no uid mapping).", "PrivateUsers=yes"),
    ("Private SysV IPC and message queues; CUDA and vLLM share memory through /dev/shm files.", "PrivateIPC=yes"),
    ("Mounts made in here stay in here.", "PrivateMounts=yes"),
    ("/proc/sys and /sys read-only: the driver's state is read, never tuned.", "ProtectKernelTunables=yes"),
    ("No module loading (nvidia-uvm is loaded at boot or by the ExecStartPre above).",
     "ProtectKernelModules=yes"),
    ("No kernel log access.", "ProtectKernelLogs=yes"),
    ("The cgroup tree read-only.", "ProtectControlGroups=yes"),
    ("The system clock cannot be set.", "ProtectClock=yes"),
    ("The hostname cannot be changed.", "ProtectHostname=yes"),
    ("Other users' processes are invisible in /proc.", "ProtectProc=invisible"),
    ("All of /proc stays: vLLM and psutil read /proc/meminfo and /proc/cpuinfo.", "ProcSubset=all"),
    ("No new namespaces (vLLM creates none).", "RestrictNamespaces=yes"),
    ("No realtime scheduling.", "RestrictRealtime=yes"),
    ("No setuid/setgid files.", "RestrictSUIDSGID=yes"),
    ("No personality changes.", "LockPersonality=yes"),
    ("The user's IPC objects are removed when the service stops.", "RemoveIPC=yes"),
    ("HTTP, vLLM's unix sockets, and netlink for torch.distributed's interface lookup.",
     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
    ("Native system calls only.", "SystemCallArchitectures=native"),
    ("A service's system calls, plus @resources (vLLM raises RLIMIT_NOFILE, sets CPU and NUMA affinity).",
     "SystemCallFilter=@system-service @resources"),
    ("Less the privileged ones.", "SystemCallFilter=~@privileged"),
    ("A refused call fails with EPERM instead of killing vLLM mid-request.", "SystemCallErrorNumber=EPERM"),
)


def systemd_unit(profile: Profile, *, qwenops_bin: str = QWENOPS_BIN) -> str:
    """The text of qwenops.service for PROFILE (deterministic: golden-tested)."""
    require_gpu_engine(profile, "a systemd unit", alternative=(
        "render a GPU profile such as 4090d, or run it in a container: "
        f"qwenops render dockerfile --profile {profile.name}"))
    check_executable(qwenops_bin)
    b = budgets(profile)
    name = profile.name
    lines = comments(header(profile, f"{UNIT_NAME}: vLLM's OpenAI-compatible server under qwenops' supervisor.",
                            f"qwenops render systemd --profile {name} -o systemd/{UNIT_NAME}"))
    lines += [
        f"# Install it with: sudo qwenops install systemd --profile {name}  (docs/deploy.md)",
        "# Never add PrivateDevices= (it hides /dev/nvidia*) or MemoryDenyWriteExecute= (Triton and",
        "# torch.compile write and run kernels): both break CUDA.",
        "",
        "[Unit]",
        systemd_line("Description", systemd_text(f"qwenops: {profile.api_model_name} on vLLM (profile {name})")),
        "# The first start downloads the weights from the Hugging Face hub.",
        "Wants=network-online.target",
        "# nvidia-persistenced keeps the driver initialised, so the devices exist and CUDA starts fast.",
        "After=network-online.target nvidia-persistenced.service",
        f"# systemd restarts qwenops at most {b.max_quick_failures} times (the supervisor's max_quick_failures) "
        f"in {b.start_limit_interval_s} s,",
        "# room for that many whole start-ups; then the unit stays failed, with the cause in the journal.",
        f"StartLimitIntervalSec={b.start_limit_interval_s}",
        f"StartLimitBurst={b.max_quick_failures}",
        "",
        "[Service]",
        "# qwenops sends READY=1 once /health and /v1/models answer; vLLM itself cannot notify systemd.",
        "Type=notify",
        "# Only qwenops may notify: vLLM never inherits NOTIFY_SOCKET.",
        "NotifyAccess=main",
        f"# qwenops pings only while vLLM answers /health: twice the {b.watchdog_s // 2} s it takes to restart "
        "an unhealthy vLLM itself.",
        f"WatchdogSec={b.watchdog_s}",
        "# As root ('+'), failure ignored ('-'): create /dev/nvidia-uvm, which the sandbox below cannot.",
        "ExecStartPre=-+/usr/bin/nvidia-modprobe -c0 -u",
        "# A host that cannot run the profile fails here, with the doctor's findings and fixes in the journal.",
        systemd_line("ExecStartPre", systemd_exec([qwenops_bin, "doctor", "--profile", name])),
        "# qwenops is the main process: it spawns vLLM in its own process group and supervises it.",
        systemd_line("ExecStart", systemd_exec([qwenops_bin, "serve", "--profile", name])),
        "# qwenops exits 1 when it gives up on vLLM (FATAL) and dies only by a bug or a signal.",
        "Restart=on-failure",
        "# Continue the supervisor's backoff where it stops (its backoff_max_s).",
        f"RestartSec={b.restart_s}",
        "# Exit 2 is bad input (the profile, a taken port, no engine): a restart cannot fix it.",
        "RestartPreventExitStatus=2",
        f"# The doctor and imports ({b.start_s - b.startup_s} s) + the profile's startup_timeout_s "
        f"({b.startup_s} s); qwenops also extends it at each spawn.",
        f"TimeoutStartSec={b.start_s}",
        "# SIGTERM goes to qwenops alone: it drains vLLM, then ends vLLM's whole process group.",
        "KillMode=mixed",
        f"# drain_timeout_s ({b.drain_s} s) + {b.stop_s - b.drain_s} s; then SIGKILL ends every process "
        "of the unit, freeing the VRAM.",
        f"TimeoutStopSec={b.stop_s}",
        "# A dedicated user (created by qwenops install from sysusers.d).",
        f"User={SERVICE_USER}",
        f"Group={SERVICE_USER}",
        "# Some distributions give the NVIDIA and DRM device nodes to these groups.",
        "SupplementaryGroups=video render",
        "# /var/lib/qwenops: HOME, qwenops' logs; created and owned by systemd.",
        "StateDirectory=qwenops",
        "# /var/cache/qwenops: the model cache and the compile caches, kept across restarts.",
        "CacheDirectory=qwenops",
        "# A directory the user owns (no ./.env is read from it).",
        "WorkingDirectory=%S/qwenops",
        "# QWENOPS_API_KEY and per-host overrides, root-only (0600): systemd reads it before dropping privileges.",
        f"EnvironmentFile={ENV_FILE}",
        "# qwenops' state (logs under logs/) and HOME in the StateDirectory.",
        "Environment=QWENOPS_STATE_DIR=%S/qwenops HOME=%S/qwenops",
        "# The weights (Hugging Face cache) and every JIT cache in the CacheDirectory.",
        "Environment=HF_HOME=%C/qwenops/huggingface XDG_CACHE_HOME=%C/qwenops",
        "Environment=VLLM_CACHE_ROOT=%C/qwenops/vllm TRITON_CACHE_DIR=%C/qwenops/triton",
        "# qwenops' and vLLM's lines reach the journal as they are written.",
        "Environment=PYTHONUNBUFFERED=1",
        f"# vLLM raises its soft open-file limit to {NOFILE} and warns below it; every stream holds a socket.",
        f"LimitNOFILE={NOFILE}",
        "# Files the service creates are private to its user.",
        "UMask=0077",
        "# Sandbox: what is known to work with CUDA.",
    ]
    for comment, directive in _HARDENING:
        lines += [f"# {comment}", directive]
    lines += [
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return file_text(lines)


def env_file(profile: Profile) -> str:
    """The text of the env file (systemd's EnvironmentFile, compose's env_file) for PROFILE."""
    # systemd reads a comment line that ends in a backslash as going on to the next line (which would
    # swallow QWENOPS_API_KEY=): no line here ends in one (file_text), and a value is a JSON string.
    lines = comments(header(profile, "qwenops.env: per-host settings for `qwenops serve`; keep it private "
                            "(chmod 600).",
                            f"qwenops render env --profile {profile.name} -o systemd/qwenops.env.example"))
    lines += [
        f"# systemd: {ENV_FILE} (qwenops install systemd writes it with a new key); Docker: docker/qwenops.env.",
        "# qwenops refuses to read an env file that holds the key and that group or others can read.",
        "",
        "# The key clients send as `Authorization: Bearer KEY`; vLLM gets it as VLLM_API_KEY, never in argv.",
        "# Empty means no key: anyone who reaches the port can use the model.",
        "QWENOPS_API_KEY=",
        "",
        "# What WebSocket clients of `qwenops gateway` must present (required when it binds beyond loopback):",
        "# python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        "QWENOPS_GATEWAY_TOKEN=",
        "",
        "# Per-host overrides of the profile's vLLM fields (the environment beats the profile), e.g.:",
        "# QWENOPS_GPU_MEMORY_UTILIZATION=0.93",
        f"# QWENOPS_MAX_MODEL_LEN={profile.max_model_len or 4096}",
        "",
        "# A Hugging Face token, for gated models or higher download limits:",
        "# HF_TOKEN=",
    ]
    return file_text(lines)


GATEWAY_UNIT_NAME = "qwenops-gateway.service"


# The server's directives that the relay replaces, by prefix: (comment, directive); None drops one.
_GATEWAY_DIFFERENT: dict[str, tuple[str, str] | None] = {
    "DeviceAllow=": None,
    "DevicePolicy=": ("No device but the standard pseudo-devices: the relay needs no GPU.", "DevicePolicy=closed"),
    "NoNewPrivileges=": ("No setuid gains.", "NoNewPrivileges=yes"),
    "RestrictAddressFamilies=": ("HTTP and WebSockets only.", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"),
    "SystemCallFilter=@system-service": ("A service's system calls.", "SystemCallFilter=@system-service"),
    "SystemCallErrorNumber=": ("A refused call fails with EPERM instead of killing the relay mid-chat.",
                               "SystemCallErrorNumber=EPERM"),
}


def _gateway_hardening() -> list[str]:
    """The server's sandbox without the NVIDIA devices, and tighter: the relay runs no kernels."""
    lines: list[str] = []
    for pair in _HARDENING:
        prefix = next((p for p in _GATEWAY_DIFFERENT if pair[1].startswith(p)), None)
        chosen = pair if prefix is None else _GATEWAY_DIFFERENT[prefix]
        if chosen is not None:
            lines += [f"# {chosen[0]}", chosen[1]]
    lines += ["# No device nodes at all (the server's unit cannot have this: it hides /dev/nvidia*).",
              "PrivateDevices=yes",
              "# No writable-and-executable memory: pure Python, no JIT.", "MemoryDenyWriteExecute=yes"]
    return lines


def _gateway_install_lines(profile: Profile) -> list[str]:
    name = profile.name
    if profile.engine == "vllm":  # `install systemd` installs GPU profiles only, with their server's unit
        return [f"# Install both with: sudo qwenops install systemd --profile {name} --gateway  (docs/deploy.md),",
                f"# which also puts a new QWENOPS_GATEWAY_TOKEN in {ENV_FILE}: it binds 0.0.0.0:{GATEWAY_PORT}, so",
                "# it refuses to start without one (the journal says so, once)."]
    return [f"# Install it beside a {profile.engine} server: sudo cp {GATEWAY_UNIT_NAME} /etc/systemd/system/ && "
            f"sudo systemctl enable --now {GATEWAY_UNIT_NAME}",
            f"# It binds 0.0.0.0:{GATEWAY_PORT}, so it refuses to start without QWENOPS_GATEWAY_TOKEN in {ENV_FILE}",
            "# (python3 -c 'import secrets; print(secrets.token_urlsafe(32))'); the journal says so, once."]


def gateway_unit(profile: Profile, *, qwenops_bin: str = QWENOPS_BIN) -> str:
    """The text of qwenops-gateway.service for PROFILE: `qwenops gateway` beside qwenops.service."""
    check_executable(qwenops_bin)
    name = profile.name
    lines = comments(header(profile, f"{GATEWAY_UNIT_NAME}: the WebSocket chat relay (`qwenops gateway`) in "
                            f"front of {UNIT_NAME}.",
                            f"qwenops render gateway-systemd --profile {name} -o systemd/{GATEWAY_UNIT_NAME}"))
    lines += [
        *(_gateway_install_lines(profile)),
        "",
        "[Unit]",
        systemd_line("Description", systemd_text(
            f"qwenops gateway: WebSocket chats for {profile.api_model_name} (profile {name})")),
        "# The server it relays to. Wants=, not Requires=: while the server restarts, chats get `unreachable`",
        "# frames and the connections stay open.",
        f"Wants={UNIT_NAME} network-online.target",
        f"After={UNIT_NAME} network-online.target",
        "",
        "[Service]",
        "# Up once the process runs; it answers /healthz as soon as it listens.",
        "Type=exec",
        systemd_line("ExecStart", systemd_exec([qwenops_bin, "gateway", "--profile", name, "--host", "0.0.0.0",
                                                "--port", str(GATEWAY_PORT), "--drain", str(GATEWAY_DRAIN_S)])),
        "Restart=on-failure",
        "RestartSec=2",
        "# Exit 2 is bad input (no token beyond loopback, a taken port): a restart cannot fix it.",
        "RestartPreventExitStatus=2",
        "# SIGTERM drains: running chats may finish for --drain seconds, then are cancelled and closed with 1001.",
        f"TimeoutStopSec={GATEWAY_STOP_S}",
        f"User={SERVICE_USER}",
        f"Group={SERVICE_USER}",
        "WorkingDirectory=%S/qwenops",
        "StateDirectory=qwenops",
        "# QWENOPS_GATEWAY_TOKEN (and QWENOPS_API_KEY, sent to the server), root-only (0600).",
        f"EnvironmentFile={ENV_FILE}",
        "Environment=QWENOPS_STATE_DIR=%S/qwenops HOME=%S/qwenops PYTHONUNBUFFERED=1",
        "# One socket per WebSocket connection and one per chat upstream.",
        f"LimitNOFILE={NOFILE}",
        "UMask=0077",
        "# Sandbox.",
        *_gateway_hardening(),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return file_text(lines)
