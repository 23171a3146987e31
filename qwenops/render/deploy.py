"""What every deployment target derives from one profile, so systemd, Docker and Kubernetes agree.

A unit file, a compose file and a Deployment each restate the supervisor's numbers in their own
words (TimeoutStartSec, stop_grace_period, startupProbe...). They are computed here once, from the
profile's `supervise:` section, and each renderer only spells them. The rules (docs/deploy.md):

- start-up: the profile's startup_timeout_s, plus START_MARGIN_S for what runs before vLLM is
  spawned (doctor, Python imports, cpu-tiny's model build);
- stop: drain_timeout_s, plus STOP_MARGIN_S for qwenops to end the process group and exit, so the
  outer layer's SIGKILL comes only after the supervisor's own;
- health: the supervisor restarts an unhealthy vLLM after health_failures probes every
  health_interval_s and a stop of at most STOP_CAP_S; an outer watchdog waits twice that long;
- restarts: the supervisor restarts vLLM with backoff and gives up (exit 1) after
  max_quick_failures; the outer layer restarts qwenops after backoff_max_s, continuing that backoff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qwenops import __version__
from qwenops.config.profile import Profile
from qwenops.errors import BadInputError
from qwenops.render.emit import comment_line, comment_value
from qwenops.untrusted import control_character

# The official vLLM image for GPU targets: v0.8.5.post1 is the last release built on CUDA 12.4
# (v0.9.0 moved to CUDA 12.8, whose images refuse a 12.4 driver: "unsatisfied condition:
# cuda>=12.8"), and the first line with Qwen3 (0.8.4+). The reference box's driver is CUDA 12.4.
VLLM_IMAGE = "vllm/vllm-openai"
VLLM_IMAGE_TAG = "v0.8.5.post1"
# The CPU image: the Python the CPU engine is tested with here; Debian bookworm like the test machine.
CPU_BASE_IMAGE = "python:3.11-slim-bookworm"
# A real init as PID 1 (signals forwarded, orphans reaped), installed from PyPI with a pinned version.
DUMB_INIT = "dumb-init==1.2.5.post1"

START_MARGIN_S = 120
STOP_MARGIN_S = 30
STOP_CAP_S = 5  # the supervisor stops an unhealthy server with min(drain_timeout_s, 5 s)
PRESTOP_PAUSE_S = 5  # Kubernetes: time for endpoints to drop the pod before SIGTERM arrives
NOFILE = 65535  # vLLM raises its soft open-file limit to this and warns below it

# Where things live on a host (systemd) and in the images; one layout for all targets.
SERVICE_USER = "qwenops"
SERVICE_UID = 10001  # containers: numeric, so runAsNonRoot can check it without /etc/passwd
STATE_DIR = "/var/lib/qwenops"
CACHE_DIR = "/var/cache/qwenops"
HF_HOME = f"{CACHE_DIR}/huggingface"
COMPILE_CACHE = f"{CACHE_DIR}/compile"
ENV_FILE = "/etc/qwenops/qwenops.env"
QWENOPS_BIN = "/opt/qwenops/bin/qwenops"
# `qwenops gateway` beside the server: its own defaults (one source), and the stop budget around its drain.
GATEWAY_PORT = 8090
GATEWAY_DRAIN_S = 30
GATEWAY_STOP_S = GATEWAY_DRAIN_S + 15
SECRET_NAME = "qwenops-api-key"
SECRET_KEY = "QWENOPS_API_KEY"
PROFILES_MOUNT = "/etc/qwenops/profiles"


@dataclass(frozen=True)
class Budgets:
    """The supervisor's numbers as every outer layer needs them, in whole seconds."""

    startup_s: int  # the profile's startup_timeout_s
    start_s: int  # startup + START_MARGIN_S: TimeoutStartSec, HEALTHCHECK start period, startupProbe
    drain_s: int
    stop_s: int  # drain + STOP_MARGIN_S: TimeoutStopSec, stop_grace_period
    watchdog_s: int  # WatchdogSec
    restart_s: int  # RestartSec: the supervisor's longest backoff
    health_interval_s: int
    health_failures: int
    max_quick_failures: int
    start_limit_interval_s: int  # room for max_quick_failures whole start-ups and restart delays
    liveness_s: int  # how long /health may fail before an outer liveness check acts: a whole reload


def budgets(profile: Profile) -> Budgets:
    s = profile.supervise
    startup = math.ceil(s.startup_timeout_s)
    restart = max(1, math.ceil(s.backoff_max_s))
    unhealthy = s.health_interval_s * s.health_failures + STOP_CAP_S
    return Budgets(
        startup_s=startup,
        start_s=startup + START_MARGIN_S,
        drain_s=math.ceil(s.drain_timeout_s),
        stop_s=math.ceil(s.drain_timeout_s) + STOP_MARGIN_S,
        watchdog_s=math.ceil(2 * unhealthy),
        restart_s=restart,
        health_interval_s=max(1, math.ceil(s.health_interval_s)),
        health_failures=s.health_failures,
        max_quick_failures=s.max_quick_failures,
        start_limit_interval_s=max(math.ceil(s.quick_failure_window_s),
                                   s.max_quick_failures * (startup + START_MARGIN_S + restart)),
        liveness_s=restart + startup + START_MARGIN_S,
    )


def gpu_count(profile: Profile) -> int:
    return profile.tensor_parallel_size or 1


def require_gpu_engine(profile: Profile, target: str, *, alternative: str) -> None:
    """Refuse a CPU profile for a target that runs the GPU engine (exit 2, one line)."""
    if profile.engine != "vllm":
        raise BadInputError(
            f"profile {profile.name} runs on {profile.engine} (no GPU), but {target} runs the GPU engine",
            field="engine", hint=alternative,
        )


def header(profile: Profile, what: str, command: str) -> list[str]:
    """The first comment lines of every rendered file (without their '#'): what it is, where it came
    from, how to re-render. The name is a validated name; the description is quoted (emit.comment_value)."""
    lines = [
        what,
        f"Rendered by qwenops {__version__} from profile '{profile.name}'; re-render instead of editing:",
        f"  {command}",
    ]
    if profile.description:
        lines.append(f"Profile: {comment_value(profile.description)}")
    return lines


def comments(texts: list[str]) -> list[str]:
    """Comment lines ('# text') for a file whose comments start with '#'."""
    return [comment_line(text) for text in texts]


def check_executable(path: str, *, option: str = "--qwenops-bin") -> str:
    """PATH if it is an absolute path in one line of text (it becomes a unit's ExecStart), else bad input."""
    found = control_character(path)
    if found is not None:
        raise BadInputError(f"the path has {found}", field=option, hint="pass the absolute path of qwenops")
    if not path.startswith("/"):
        raise BadInputError(f"{path} is not an absolute path", field=option, hint="pass the absolute path of qwenops")
    return path


def publish_host(profile: Profile) -> str:
    """The host address a container's port is published on: the profile's own bind address."""
    return f"[{profile.host}]" if ":" in profile.host else profile.host
