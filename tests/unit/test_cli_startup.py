"""`qwenops --help` must stay light: no engine, GPU or web framework imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "vllm", "pynvml", "fastapi", "transformers", "tokenizers", "httpx")
# `--help` and `--version` need Click alone: not even the validation and parsing libraries. A valid profile
# needs no pydantic either (qwenops.config.profile checks plainly valid data itself), and a plain table on a
# pipe no rich (qwenops.cli.output.PlainTable).
PROBE = Path(__file__).resolve().parents[1] / "data" / "probes" / "rtx4090d-cuda124.json"
HELP_ONLY = (*HEAVY, "pydantic", "yaml", "prometheus_client", "psutil", "rich")
# The deployment and monitoring targets read the profile's supervise: section (SupervisorOptions, a plainschema
# dataclass): no pydantic either.
DEPLOY_TARGETS = ("systemd", "compose", "dockerfile", "kubernetes", "helm-values", "kubernetes-monitoring", "grafana",
                  "prometheus-config", "prometheus-rules", "gateway-systemd", "script", "env")


@pytest.mark.parametrize(
    ("args", "heavy"),
    [(["--help"], HELP_ONLY), (["--version"], HELP_ONLY), (["troubleshoot", "--help"], HELP_ONLY),
     (["install", "systemd", "--help"], HELP_ONLY), (["render", "systemd", "--help"], HELP_ONLY),
     (["profiles", "list"], (*HEAVY, "pydantic", "rich")),
     (["render", "flags", "--profile", "4090d"], (*HEAVY, "pydantic", "rich")),
     *[(["render", target, "--profile", "4090d"], (*HEAVY, "pydantic", "rich")) for target in DEPLOY_TARGETS],
     (["render", "systemd", "--profile", "cpu-tiny"], (*HEAVY, "pydantic", "rich")),
     # A recorded probe, the model's shipped config.json and the plan need no pydantic (qwenops.plainschema), its
     # view on a pipe no rich (output.PlainGroup).
     (["plan", "--profile", "4090d", "--probe-file", str(PROBE)], (*HEAVY, "pydantic", "rich"))],
)
def test_commands_do_not_import_heavy_modules(args: list[str], heavy: tuple[str, ...]) -> None:
    loaded = _imported(args, heavy, {})
    assert loaded == [], f"qwenops {' '.join(args)} imported {loaded}"


@pytest.mark.parametrize("target", ["prometheus-config", "kubernetes-monitoring", "compose", "systemd"])
def test_a_profile_serving_metrics_renders_without_pydantic(tmp_path: Path, target: str) -> None:
    # supervise.metrics is checked (and normalised) by SupervisorOptions' own rule, without pydantic.
    (tmp_path / "watched.yaml").write_text("name: watched\nextends: 4090d\nsupervise:\n  metrics: '9400'\n")
    args = ["render", target, "--profile", "watched"]
    loaded = _imported(args, (*HEAVY, "pydantic", "rich"), {"QWENOPS_PROFILES_DIR": str(tmp_path)})
    assert loaded == [], f"qwenops {' '.join(args)} imported {loaded}"


def _imported(args: list[str], heavy: tuple[str, ...], extra_env: dict[str, str]) -> list[str]:
    """Which of HEAVY `qwenops ARGS` imported (it must not fail on its input)."""
    probe = (
        "import sys, json\n"
        "from qwenops.cli import cli\n"
        "try:\n"
        f"    cli.main({args!r}, prog_name='qwenops', standalone_mode=False)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (None, 0, 1), exc.code  # plan's 1: a verdict, not bad input\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)\n"
    )
    # A pipe, as a script sees it: pytest sets COLUMNS and LINES, under which rich sizes the table itself.
    env = {**{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}, **extra_env}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    loaded: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return loaded


def test_version_matches_package() -> None:
    from qwenops import __version__

    done = subprocess.run([sys.executable, "-m", "qwenops", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"qwenops, version {__version__}"
