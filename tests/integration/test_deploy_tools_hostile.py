"""The renders of a hostile profile (tests/unit/test_render_hostile.py) checked by the real tools: each
accepts the file and reads the same structure as from a clean profile, with each value in its place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from qwenops.render.docker import compose, dockerfile
from qwenops.render.kubernetes import helm_values, manifests
from tests.integration.test_deploy_tools import compose_config, helm_errors, kubernetes_validate, run, venv_tool, write
from tests.unit.test_render_hostile import HOSTILE_ENV, NASTY, clean_profile, hostile_profile, kubelet, load


@pytest.mark.parametrize("data", [hostile_profile(), clean_profile()], ids=["hostile", "clean"])
def test_compose_reads_the_hostile_file_as_the_clean_one(data: dict[str, object], tmp_path: Path) -> None:
    profile = load(tmp_path, data)
    compose_file = write(tmp_path / "docker", "compose.yaml", compose(profile))
    write(tmp_path / "docker", "qwenops.env", "QWENOPS_API_KEY=\n")
    done = compose_config(compose_file, "-q")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    normalized = json.loads(compose_config(compose_file, "--format", "json").stdout)
    assert set(normalized["services"]) == {"qwenops", "gateway"}
    service = normalized["services"]["qwenops"]
    assert [(p["host_ip"], p["target"]) for p in service["ports"]] == [(profile.host, 8000)]
    assert "privileged" not in service and "pid" not in service


def test_kubernetes_validate_accepts_the_hostile_manifests(tmp_path: Path) -> None:
    manifest = write(tmp_path, "qwenops.yaml", manifests(load(tmp_path, hostile_profile())))
    done = kubernetes_validate(manifest, "-k", "1.29.0")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    assert [doc["kind"] for doc in yaml.safe_load_all(manifest.read_text())] == [
        "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"]


def test_the_chart_schema_accepts_the_hostile_values(tmp_path: Path) -> None:
    values = yaml.safe_load(helm_values(load(tmp_path, hostile_profile())))
    assert helm_errors(values) == []
    spec = values["servingEngineSpec"]["modelSpec"][0]
    assert kubelet(spec["modelURL"]) == f"org/{NASTY}"  # what the container gets (every $ doubled)
    assert {e["name"]: kubelet(e["value"]) for e in spec["env"]}.items() >= HOSTILE_ENV.items()


def test_hadolint_has_nothing_to_say_about_the_hostile_dockerfile(tmp_path: Path) -> None:
    path = write(tmp_path, "Dockerfile", dockerfile(load(tmp_path, hostile_profile())))
    done = run(venv_tool("hadolint"), "--no-color", str(path))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
