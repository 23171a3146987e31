"""A real Prometheus scrapes the real CPU engine under `qwenops serve` (with supervise.metrics on), under a
short load: every dashboard query and every alert's series has data (no "No data" panel), and a SIGKILLed
EngineCore makes the restart alert pending.

The gateway runs beside it (in this process), its chats relayed to the same server, so its panels and
its alert's series have data too. The GPU memory alert reads NVIDIA's DCGM exporter, which a CPU host
has not: promtool's tests cover it (tests/unit/test_monitoring.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from qwenops.config.loader import load_profile
from qwenops.render.monitoring import (
    JOB_GATEWAY,
    JOB_SERVE,
    JOB_VLLM,
    alert_rules,
    dashboard_panels,
    default_slo,
    prometheus_rules,
    scrape_config,
)
from tests.gateway_harness import chat as chat_frame
from tests.gateway_harness import connect, running_gateway, until_end
from tests.integration.conftest import Serve, free_port, start_serve
from tests.polling import poll_until

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

NOT_ON_A_CPU_HOST = "dcgm"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes at a 1 s scrape, generously


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    directory = tmp_path / "profiles"
    directory.mkdir()
    metrics_port = free_port()
    (directory / "monitored.yaml").write_text(yaml.safe_dump(
        {"extends": "cpu-tiny", "supervise": {"health_interval_s": 1, "backoff_initial_s": 1,
                                              "metrics": f"127.0.0.1:{metrics_port}"}}))
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    return "monitored"


@contextlib.contextmanager
def prometheus(tmp_path: Path, targets: dict[str, str], rules: str) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: scripts/test.sh installs it (apt-get install prometheus)", pytrace=False)
    (tmp_path / "qwenops-rules.yml").write_text(rules)
    config = scrape_config(load_profile("cpu-tiny", env={}), interval="1s", targets=targets)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: _ready(url, process, tmp_path), "Prometheus ready", timeout_s=180, interval_s=0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _ready(url: str, process: subprocess.Popen[bytes], tmp_path: Path) -> bool:
    assert process.poll() is None, (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    return False


def query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).raise_for_status().json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]  # an instant vector: {"metric": ..., "value": ...}
    return result


def chat(base_url: str, model: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{base_url}/v1/chat/completions", timeout=120,
                   json={"model": model, "messages": [{"role": "user", "content": "count to ten"}],
                         "max_tokens": 24})


async def gateway_chats(url: str, count: int) -> None:
    async with connect(url) as ws:
        for number in range(count):
            await ws.send(chat_frame(f"c{number}", "count to ten", max_tokens=24))
        await until_end(ws, {f"c{number}" for number in range(count)}, timeout_s=300)


def test_prometheus_scrapes_every_panel_and_rule_and_sees_a_restart(
        profiles: str, state_dir: Path, tmp_path: Path) -> None:
    profile = load_profile(profiles, env={})
    assert profile.supervise.metrics is not None
    serve_gen = start_serve(state_dir, "-p", profiles)
    serve: Serve = next(serve_gen)
    try:
        ready = serve.wait_message("READY=1")
        base_url = f"http://127.0.0.1:{serve.port}"
        served = load_profile(profiles, env={}, cli_overrides={"port": str(serve.port)})
        with running_gateway(base_url, model=served.api_model_name) as gateway, \
                prometheus(tmp_path, {JOB_VLLM: f"127.0.0.1:{serve.port}", JOB_SERVE: profile.supervise.metrics,
                                      JOB_GATEWAY: f"127.0.0.1:{gateway.config.port}"},
                           prometheus_rules(served, default_slo())) as prom:
            jobs = (JOB_VLLM, JOB_SERVE, JOB_GATEWAY)
            poll_until(lambda: all(query(prom, f'up{{job="{job}"}} == 1') for job in jobs),
                       "vLLM, serve and the gateway scraped", timeout_s=120)
            # A short load, spread over a few scrapes so that rates and histograms have data.
            for _ in range(6):
                chat(base_url, served.api_model_name)
                asyncio.run(gateway_chats(gateway.url, 2))

            expressions: dict[str, str] = {}
            for panel in dashboard_panels(served):
                for expr, legend in panel.queries:
                    expressions[f"panel {panel.title!r} ({legend})"] = expr.replace("$__rate_interval", RATE_INTERVAL)
            for rule in alert_rules(served, default_slo()):
                if rule.source != NOT_ON_A_CPU_HOST:
                    for number, expr in enumerate(rule.queries):
                        expressions[f"rule {rule.alert} #{number}"] = expr
            missing: dict[str, str] = {}

            def all_have_data() -> bool:
                missing.clear()
                for what, expr in expressions.items():
                    if not query(prom, expr):
                        missing[what] = expr
                return not missing

            poll_until(all_have_data, f"data for every panel and rule (missing: {missing})", timeout_s=120,
                       interval_s=1)

            # A SIGKILLed EngineCore: serve restarts vLLM, and the restart alert goes pending (for: 1m).
            serve.remember_server_pids()
            engine = next(p for p in psutil.Process(serve.process.pid).children(recursive=True)
                          if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline()))
            engine.kill()
            serve.wait_message("STATUS=starting vLLM (pid", after=ready + 1, timeout_s=180)

            def restart_alert() -> list[dict[str, Any]]:
                alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=10).raise_for_status().json()["data"]["alerts"]
                return [a for a in alerts if a["labels"]["alertname"] == "QwenopsServeRestarted"
                        and a["state"] in ("pending", "firing")]

            [alert] = poll_until(restart_alert, "QwenopsServeRestarted pending", timeout_s=180, interval_s=0.5)
            assert alert["labels"]["severity"] == "warning"
            restarts = query(prom, f'sum(qwenops_serve_restarts_total{{job="{JOB_SERVE}"}})')
            assert restarts and float(restarts[0]["value"][1]) >= 1
            chats = query(prom, 'sum(qwenops_gateway_chats_total{outcome="done"})')
            assert chats and float(chats[0]["value"][1]) >= 12
    finally:
        with contextlib.suppress(StopIteration):
            next(serve_gen)
