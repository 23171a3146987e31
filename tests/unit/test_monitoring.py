"""`qwenops render prometheus-rules|grafana|prometheus-config`: goldens, committed renders, the SLO, bad input,
and the real promtool (Debian's prometheus package, installed by scripts/test.sh): `check rules`, `check
config` and `test rules` with one unit test per alert that fires on its series and stays silent on a
healthy one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.config.loader import load_profile
from qwenops.render.monitoring import (
    VLLM_DEFAULT_TPOT_S,
    VLLM_DEFAULT_TTFT_S,
    alert_rules,
    dashboard_panels,
    default_slo,
    slo_from_files,
)
from qwenops.render.run import MONITORING_TARGETS, render_monitoring
from tests.conftest import REPO, Golden

SUFFIX = {"prometheus-rules": "rules.yml", "grafana": "dashboard.json", "prometheus-config": "prometheus.yml"}
# The committed renders of the reference profile, pinned against drift.
COMMITTED = {f"monitoring/{SUFFIX[target]}": target for target in MONITORING_TARGETS}
REFERENCE = "4090d"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: scripts/test.sh installs it (apt-get install prometheus)")
        pytest.skip("promtool is not installed here (apt-get install prometheus)")
    return found


@pytest.mark.parametrize("name", ["4090d", "cpu-tiny"])
@pytest.mark.parametrize("target", sorted(MONITORING_TARGETS))
def test_every_target_renders_to_its_golden(target: str, name: str, golden: Golden) -> None:
    result = invoke("render", target, "--profile", name)
    assert result.exit_code == 0, result.stderr
    golden(f"monitoring/{name}.{SUFFIX[target]}", result.stdout)
    # No SLO saved in these profiles: said on stderr, and in the file.
    assert "no SLO saved in this profile" in result.stderr
    assert "vLLM's example" in result.stdout


@pytest.mark.parametrize("path", sorted(COMMITTED))
def test_committed_renders_are_the_reference_profiles(path: str) -> None:
    target = COMMITTED[path]
    assert (REPO / path).read_text(encoding="utf-8") == render_monitoring(target, REFERENCE).text, (
        f"{path} drifted from its render; run: qwenops render {target} -p {REFERENCE} -o {path}")


def test_an_unknown_target_is_one_line_exit_2() -> None:
    result = CliRunner().invoke(cli, ["render", "prometheus-alerts", "-p", REFERENCE])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_write_with_output(tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    result = invoke("render", "prometheus-rules", "-p", REFERENCE, "-o", str(out))
    assert result.exit_code == 0 and result.stdout == f"wrote {out}\n"
    assert yaml.safe_load(out.read_text())["groups"][0]["rules"]


def tuned(tmp_path: Path, slo_line: str, **values: object) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir()
    body = yaml.safe_dump({"extends": "cpu-tiny", "description": "tuned", **values})
    (directory / "cpu-tiny-tuned.yaml").write_text(f"# Tuned by `qwenops tune` at 2025-01-01T00:00:00.\n"
                                                  f"{slo_line}\n{body}")
    return directory


def test_the_tune_slo_saved_in_the_profile_sets_the_latency_alerts(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tuned(tmp_path, "# SLO: TTFT <= 1500 ms, TPOT <= 80 ms (goodput: requests/s meeting both)")
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    result = invoke("render", "prometheus-rules", "-p", "cpu-tiny-tuned")
    assert result.exit_code == 0, result.stderr
    rules = {r["alert"]: r for r in yaml.safe_load(result.stdout)["groups"][0]["rules"]}
    assert rules["VllmTtftP99AboveSlo"]["expr"].endswith("> 1.5")
    assert rules["VllmTpotP99AboveSlo"]["expr"].endswith("> 0.08")
    description = rules["VllmTtftP99AboveSlo"]["annotations"]["description"]
    assert "qwenops tune's SLO saved in cpu-tiny-tuned.yaml" in description
    assert "no SLO saved" not in result.stderr


def test_a_missing_or_unreadable_slo_falls_back_to_vllms_defaults(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("# SLO: TTFT <= 0 ms, TPOT <= 5 ms\n")
    assert slo_from_files([str(tmp_path / "a.yaml"), str(tmp_path / "missing.yaml")]) == default_slo()
    assert (default_slo().ttft_s, default_slo().tpot_s) == (VLLM_DEFAULT_TTFT_S, VLLM_DEFAULT_TPOT_S)


def test_disable_log_stats_is_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tuned(tmp_path, "", disable_log_stats=True)
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    result = invoke("render", "grafana", "-p", "cpu-tiny-tuned")
    assert result.exit_code == 0
    assert "disable_log_stats" in result.stderr and "no vllm: series" in result.stderr


def test_a_hostile_model_name_stays_one_promql_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nasty = 'x"} or vector(1) #\\'
    directory = tuned(tmp_path, "", served_model_name=nasty)
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    profile = load_profile("cpu-tiny-tuned", env={})
    for rule in alert_rules(profile, default_slo()):
        if "model_name=" in rule.expr:
            assert 'model_name="x\\"} or vector(1) #\\\\"' in rule.expr
    rules = render_monitoring("prometheus-rules", "cpu-tiny-tuned").text
    path = tmp_path / "rules.yml"
    path.write_text(rules)
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_grafana_variable_form_survives_in_a_dashboards_model_name(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grafana expands `$name`, `${name}` and the older `[[name]]` in query text (audit 9 found the last one): a model
    name holding either is written with PromQL's \\x escapes, which Prometheus reads back as the same name."""
    nasty = "m[[__interval]]${__user.email}$x"
    directory = tuned(tmp_path, "", served_model_name=nasty)
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    board = json.loads(render_monitoring("grafana", "cpu-tiny-tuned").text)
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", []) if "model_name=" in t["expr"]]
    names = [m for e in exprs for m in re.findall(r'model_name="((?:[^"\\]|\\.)*)"', e)]
    assert names and not [n for n in names if "[[" in n or "$" in n]
    shown = 'model_name="m\\x5b\\x5b__interval]]\\x24{__user.email}\\x24x"'
    assert all(shown in e for e in exprs), exprs[0]


def test_the_dashboard_is_grafana_json_with_a_query_in_every_panel() -> None:
    board = json.loads(render_monitoring("grafana", REFERENCE).text)
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) == len(dashboard_panels(load_profile(REFERENCE, env={})))
    assert {p["type"] for p in panels} == {"timeseries", "stat", "state-timeline"}
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["targets"] and all(t["expr"] and t["datasource"]["uid"] == "${datasource}"
                                        for t in panel["targets"]), panel["title"]
    titles = {p["title"] for p in panels}
    assert {"Time to first token", "KV cache usage", "Prefix cache hit rate", "Preemptions", "Finish reasons",
            "Queue time", "Supervisor state", "Restarts by cause", "Gateway chats"} <= titles
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]


# ----------------------------------------------------------------------------------------- promtool


def test_promtool_checks_the_rules_and_the_scrape_config_clean(tmp_path: Path) -> None:
    tool = promtool()
    (tmp_path / "qwenops-rules.yml").write_text(render_monitoring("prometheus-rules", REFERENCE).text)
    (tmp_path / "prometheus.yml").write_text(render_monitoring("prometheus-config", REFERENCE).text)
    for args in (("check", "rules", "qwenops-rules.yml"), ("check", "config", "prometheus.yml")):
        done = subprocess.run([tool, *args], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr and "WARNING" not in done.stdout + done.stderr


SERVE = 'job="qwenops-serve", instance="h:9402"'
VLLM = 'instance="h:8000", job="vllm", model_name="Qwen3-14B", engine="0"'
GW = 'instance="h:8090", job="qwenops-gateway"'


def histogram(name: str, slow: bool, le: tuple[str, str]) -> list[tuple[str, str]]:
    """A histogram where every request lands in the slow bucket (le[1]) or the fast one (le[0])."""
    fast_count = "0+0x40" if slow else "0+60x40"
    return [(f'{name}_bucket{{{VLLM}, le="{le[0]}"}}', fast_count),
            (f'{name}_bucket{{{VLLM}, le="{le[1]}"}}', "0+60x40"),
            (f'{name}_bucket{{{VLLM}, le="+Inf"}}', "0+60x40")]


Series = list[tuple[str, str]]
# alert -> (series on which it fires, series on which it stays silent, the labels it fires with)
CASES: dict[str, tuple[Series, Series, dict[str, str]]] = {
    "VllmDown": ([('up{job="vllm", instance="h:8000"}', "0x40")], [('up{job="vllm", instance="h:8000"}', "1x40")],
                 {"job": "vllm", "instance": "h:8000"}),
    "QwenopsServeDown": ([(f"up{{{SERVE}}}", "0x40")], [(f"up{{{SERVE}}}", "1x40")],
                         {"job": "qwenops-serve", "instance": "h:9402"}),
    "QwenopsServeNotRunning": ([(f'qwenops_serve_state{{{SERVE}, state="RUNNING"}}', "0x40")],
                               [(f'qwenops_serve_state{{{SERVE}, state="RUNNING"}}', "1x40")],
                               {"instance": "h:9402"}),
    "QwenopsServeRestarted": ([(f'qwenops_serve_restarts_total{{{SERVE}, cause="engine_died"}}', "0x20 1x20")],
                              [(f'qwenops_serve_restarts_total{{{SERVE}, cause="engine_died"}}', "0x40")],
                              {"instance": "h:9402"}),
    "QwenopsServeRestartingRepeatedly": (
        [(f'qwenops_serve_restarts_total{{{SERVE}, cause="engine_died"}}', "0x20 1 2 3x18")],
        [(f'qwenops_serve_restarts_total{{{SERVE}, cause="engine_died"}}', "0x20 1x20")],
        {"instance": "h:9402"}),
    "QwenopsServeFatal": ([(f"qwenops_serve_last_fatal_timestamp_seconds{{{SERVE}}}", "1500x40")],
                          [(f"qwenops_serve_last_fatal_timestamp_seconds{{{SERVE}}}", "0x40")],
                          {"instance": "h:9402"}),
    "QwenopsEngineStalled": ([(f"qwenops_serve_stall_confirmations_total{{{SERVE}}}", "0x20 1x20")],
                             [(f"qwenops_serve_stall_confirmations_total{{{SERVE}}}", "0x40")],
                             {"instance": "h:9402"}),
    "VllmKvCacheFullWithWaiting": (
        [(f"vllm:kv_cache_usage_perc{{{VLLM}}}", "0.95x40"), (f"vllm:num_requests_waiting{{{VLLM}}}", "3x40")],
        [(f"vllm:kv_cache_usage_perc{{{VLLM}}}", "0.95x40"), (f"vllm:num_requests_waiting{{{VLLM}}}", "0x40")],
        {"instance": "h:8000", "job": "vllm", "model_name": "Qwen3-14B", "engine": "0"}),
    "VllmPreemptions": ([(f"vllm:num_preemptions_total{{{VLLM}}}", "0+120x40")],
                        [(f"vllm:num_preemptions_total{{{VLLM}}}", "0+6x40")],
                        {"instance": "h:8000", "model_name": "Qwen3-14B"}),
    "VllmTtftP99AboveSlo": (histogram("vllm:time_to_first_token_seconds", True, ("1", "60")),
                            histogram("vllm:time_to_first_token_seconds", False, ("1", "60")),
                            {"instance": "h:8000", "model_name": "Qwen3-14B"}),
    "VllmTpotP99AboveSlo": (histogram("vllm:request_time_per_output_token_seconds", True, ("0.1", "5")),
                            histogram("vllm:request_time_per_output_token_seconds", False, ("0.1", "5")),
                            {"instance": "h:8000", "model_name": "Qwen3-14B"}),
    "GpuMemoryNearFull": ([('DCGM_FI_DEV_FB_USED{gpu="0", Hostname="h"}', "24000x40"),
                           ('DCGM_FI_DEV_FB_FREE{gpu="0", Hostname="h"}', "100x40")],
                          [('DCGM_FI_DEV_FB_USED{gpu="0", Hostname="h"}', "22800x40"),
                           ('DCGM_FI_DEV_FB_FREE{gpu="0", Hostname="h"}', "1300x40")],
                          {"gpu": "0", "Hostname": "h"}),
    "QwenopsGatewayErrors": (
        [(f'qwenops_gateway_chat_errors_total{{{GW}, code="interrupted"}}', "0+30x40"),
         (f'qwenops_gateway_chats_total{{{GW}, outcome="error"}}', "0+30x40"),
         (f'qwenops_gateway_chats_total{{{GW}, outcome="done"}}', "0+30x40")],
        [(f'qwenops_gateway_chat_errors_total{{{GW}, code="cancelled"}}', "0+30x40"),
         (f'qwenops_gateway_chats_total{{{GW}, outcome="error"}}', "0+30x40"),
         (f'qwenops_gateway_chats_total{{{GW}, outcome="done"}}', "0+30x40")],
        {"instance": "h:8090"}),
}


def test_every_alert_has_a_promtool_case() -> None:
    assert sorted(CASES) == sorted(r.alert for r in alert_rules(load_profile(REFERENCE, env={}), default_slo()))


def _expected(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    def expand(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], text)

    return {"exp_labels": {**labels, **rule["labels"], "alertname": rule["alert"]},
            "exp_annotations": {key: expand(value) for key, value in rule["annotations"].items()}}


@pytest.mark.parametrize("alert", sorted(CASES))
def test_promtool_each_alert_fires_on_its_series_and_is_silent_on_a_healthy_one(alert: str, tmp_path: Path) -> None:
    tool = promtool()
    rules_text = render_monitoring("prometheus-rules", REFERENCE).text
    (tmp_path / "rules.yml").write_text(rules_text)
    rule = next(r for r in yaml.safe_load(rules_text)["groups"][0]["rules"] if r["alert"] == alert)
    firing, healthy, labels = CASES[alert]
    expected = _expected(rule, labels)
    expected["exp_labels"].pop("alertname")

    def case(series: Series, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [{"eval_time": "35m", "alertname": alert, "exp_alerts": alerts}]}

    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
             "tests": [case(firing, [expected]), case(healthy, [])]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run([tool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_does_not_import_the_dashboard_library() -> None:
    import sys

    code = ("import sys, qwenops.cli.render; from click.testing import CliRunner; from qwenops.cli import cli; "
            "CliRunner().invoke(cli, ['render', '--help']); "
            "assert 'grafana_foundation_sdk' not in sys.modules and 'qwenops.render.monitoring' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
