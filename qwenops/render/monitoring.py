"""Profile -> Prometheus alert rules, a Grafana dashboard and a Prometheus scrape config (docs/monitoring.md).

Pure functions of the profile (and the SLO its tuned file records): the rules, panels and scrape
jobs are data here, and each file is emitted through qwenops/render/emit.py (YAML) or the Grafana
Foundation SDK's encoder (JSON). The dashboard is built with grafana-foundation-sdk, imported only
when `render grafana` runs.

Metric names come from the installed vLLM 0.32 (vllm/v1/metrics/loggers.py) and a live /metrics of
the CPU server; qwenops' own from qwenops/supervisor/metrics.py (serve) and docs/monitoring.md
(the gateway's). A value from the profile that reaches a PromQL expression goes through
promql_string; the expression then reaches YAML or JSON through the emitters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwenops.config.profile import Profile
from qwenops.net import connect_host
from qwenops.render.deploy import GATEWAY_PORT
from qwenops.render.emit import comment_value, yaml_document

# Where `qwenops serve` is scraped when the profile does not turn its metrics on (supervise.metrics).
SERVE_METRICS_PORT = 9402
# Scrape jobs: the names the rules' up{} alerts and the dashboard's panels select on.
JOB_VLLM, JOB_SERVE, JOB_GATEWAY = "vllm", "qwenops-serve", "qwenops-gateway"

# vLLM's own example alerts (examples/online_serving/prometheus_grafana/k8s-monitoring/prometheusrule.yaml):
# p99 TTFT above 30 s, p99 inter-token latency above 1 s; used when the profile records no SLO.
VLLM_DEFAULT_TTFT_S = 30.0
VLLM_DEFAULT_TPOT_S = 1.0
# The DCGM exporter's frame-buffer gauges (MiB), as NVIDIA's dcgm-exporter names them.
DCGM_USED, DCGM_FREE = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"
# `qwenops tune` writes this line into the header of the NAME-tuned profile it saves (tune/saving.py).
_SLO_LINE = re.compile(r"^# SLO: TTFT <= ([0-9.e+]+) ms, TPOT <= ([0-9.e+]+) ms\b", re.MULTILINE)


@dataclass(frozen=True)
class Slo:
    ttft_s: float
    tpot_s: float
    source: str  # where the numbers came from, said in the renders

    @property
    def from_tune(self) -> bool:
        return self.source.startswith("qwenops tune")


def default_slo() -> Slo:
    return Slo(VLLM_DEFAULT_TTFT_S, VLLM_DEFAULT_TPOT_S,
               "vLLM's example alert thresholds (no SLO saved by `qwenops tune` in this profile)")


def slo_from_files(files: Sequence[str]) -> Slo:
    """The SLO `qwenops tune` saved in the profile's file (or one it extends); vLLM's defaults when none."""
    from qwenops.readfile import read_capped

    for name in files:
        try:
            text = read_capped(name, 65536)[:65536].decode("utf-8", "replace")
        except OSError:
            continue
        match = _SLO_LINE.search(text)
        if match is None:
            continue
        try:
            ttft_ms, tpot_ms = float(match[1]), float(match[2])
        except ValueError:
            continue
        if 0 < ttft_ms <= 3_600_000 and 0 < tpot_ms <= 3_600_000:
            return Slo(ttft_ms / 1000, tpot_ms / 1000, f"qwenops tune's SLO saved in {Path(name).name}")
    return default_slo()


def notes(profile: Profile, slo: Slo) -> list[str]:
    """What the operator must hear about these renders (printed by the CLI, written as comments)."""
    out = []
    if not slo.from_tune:
        out.append(f"the latency alerts use vLLM's example thresholds (TTFT p99 > {slo.ttft_s:g} s, "
                   f"TPOT p99 > {slo.tpot_s:g} s): no SLO saved in this profile; run `qwenops tune` to save one")
    if profile.disable_log_stats:
        out.append("the profile sets disable_log_stats: vLLM then registers no Prometheus logger and /metrics "
                   "has no vllm: series, so every vLLM panel and alert stays empty")
    if profile.supervise.metrics is None:
        out.append(f"supervise.metrics is not set: qwenops serve serves no metrics; set it (e.g. "
                   f"127.0.0.1:{SERVE_METRICS_PORT}) for the serve panels and alerts")
    return out


def promql_string(value: str) -> str:
    """VALUE as a PromQL string literal (double-quoted, Go escapes; json.dumps' are a subset), with `$` as
    `\\x24` and `[` as `\\x5b`: Grafana expands `$name`, `${name}`, `$__interval` and the older `[[name]]` in a
    query's text before sending it, and has no escape for a literal one, so a model name holding one would select
    another model, per viewer (audit 9 found the `[[...]]` form)."""
    return json.dumps(value, ensure_ascii=True).replace("$", "\\x24").replace("[", "\\x5b")


def _model(profile: Profile) -> str:
    return "model_name=" + promql_string(profile.api_model_name)


# ------------------------------------------------------------------------------------------ rules


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    queries: tuple[str, ...]  # the series the alert judges: each has data on a healthy, scraped system
    for_: str
    severity: str
    summary: str
    description: str
    category: str  # the `qwenops troubleshoot` category that explains it
    source: str  # which target's series it reads: vllm, serve, gateway, dcgm


def _quantile(q: float, metric: str, selector: str, window: str, by: str = "le") -> str:
    return f"histogram_quantile({q:g}, sum by ({by}) (rate({metric}_bucket{{{selector}}}[{window}])))"


def alert_rules(profile: Profile, slo: Slo) -> list[AlertRule]:
    m = _model(profile)
    by = "le, instance, model_name"
    ttft = _quantile(0.99, "vllm:time_to_first_token_seconds", m, "5m", by)
    tpot = _quantile(0.99, "vllm:request_time_per_output_token_seconds", m, "5m", by)
    kv = f"vllm:kv_cache_usage_perc{{{m}}}"
    waiting = f"vllm:num_requests_waiting{{{m}}}"
    preempt = f"sum by (instance, model_name) (rate(vllm:num_preemptions_total{{{m}}}[5m]))"
    restarts = f"sum by (instance) (increase(qwenops_serve_restarts_total{{job=\"{JOB_SERVE}\"}}[15m]))"
    stalls = f"sum by (instance) (increase(qwenops_serve_stall_confirmations_total{{job=\"{JOB_SERVE}\"}}[30m]))"
    fatal_at = f"max by (instance) (qwenops_serve_last_fatal_timestamp_seconds{{job=\"{JOB_SERVE}\"}})"
    fatal_age = f"time() - {fatal_at}"
    running = f"max by (instance) (qwenops_serve_state{{job=\"{JOB_SERVE}\", state=\"RUNNING\"}})"
    server_errors = 'code=~"in_band_error|interrupted|unreachable|http_status|timeout|internal"'
    errors = f"sum by (instance) (rate(qwenops_gateway_chat_errors_total{{{server_errors}}}[5m]))"
    chats = "sum by (instance) (rate(qwenops_gateway_chats_total[5m]))"
    gpu = f"{DCGM_USED} / ({DCGM_USED} + {DCGM_FREE})"
    # vLLM reserves gpu_memory_utilization of the GPU by design; "near full" is past that reservation.
    gpu_limit = min(0.99, round((profile.gpu_memory_utilization or 0.9) + 0.05, 2))
    return [
        AlertRule("VllmDown", f'up{{job="{JOB_VLLM}"}} == 0', (f'up{{job="{JOB_VLLM}"}}',), "2m", "critical",
                  "vLLM's /metrics cannot be scraped", "The server on {{ $labels.instance }} does not answer "
                  "/metrics: stopped, restarting or hung.", "engine_dead", "vllm"),
        AlertRule("QwenopsServeDown", f'up{{job="{JOB_SERVE}"}} == 0', (f'up{{job="{JOB_SERVE}"}}',), "2m",
                  "critical", "qwenops serve cannot be scraped", "qwenops serve on {{ $labels.instance }} is not "
                  "running (systemd gave up on it, or supervise.metrics is off).", "engine_dead", "serve"),
        AlertRule("QwenopsServeNotRunning", f"{running} == 0", (running,), "10m", "critical",
                  "vLLM is not serving", "qwenops serve on {{ $labels.instance }} has not had vLLM RUNNING for "
                  "10 minutes (starting, backing off or FATAL).", "engine_dead", "serve"),
        AlertRule("QwenopsServeRestarted", f"{restarts} > 0", (restarts,), "1m", "warning",
                  "vLLM was restarted", "qwenops serve on {{ $labels.instance }} restarted vLLM in the "
                  "last 15 minutes (qwenops_serve_restarts_total by cause).", "engine_dead", "serve"),
        AlertRule("QwenopsServeRestartingRepeatedly", f"{restarts} > 2", (restarts,), "1m", "critical",
                  "vLLM keeps restarting", "qwenops serve on {{ $labels.instance }} restarted vLLM more than "
                  "twice in 15 minutes (qwenops_serve_restarts_total by cause).", "engine_dead", "serve"),
        AlertRule("QwenopsServeFatal", f"({fatal_age} < 1800) and ({fatal_at} > 0)", (fatal_age,), "1m", "critical",
                  "qwenops serve gave up on vLLM (FATAL)", "qwenops serve on {{ $labels.instance }} gave up on vLLM "
                  "in the last 30 minutes; the cause is in qwenops_serve_last_fatal_info.",
                  "unclassified", "serve"),
        AlertRule("QwenopsEngineStalled", f"{stalls} > 0", (stalls,), "1m", "warning",
                  "the engine stalled", "qwenops serve on {{ $labels.instance }} confirmed a stall in the "
                  "last 30 minutes (no token, and a one-token request unanswered) and restarted vLLM.",
                  "engine_stalled", "serve"),
        AlertRule("VllmKvCacheFullWithWaiting", f"({kv} > 0.9) and ({waiting} > 0)", (kv, waiting), "5m",
                  "warning", "KV cache above 90% with requests waiting",
                  "{{ $labels.model_name }} on {{ $labels.instance }} uses more than 90% of "
                  "its KV cache while requests wait.", "kv_cache_full", "vllm"),
        AlertRule("VllmPreemptions", f"{preempt} > 1", (preempt,), "5m", "warning",
                  "vLLM preempts requests", "{{ $labels.model_name }} on {{ $labels.instance }} preempts more "
                  "than one request a second: the KV cache is too small for the batch.",
                  "kv_cache_preemption", "vllm"),
        AlertRule("VllmTtftP99AboveSlo", f"{ttft} > {slo.ttft_s:g}", (ttft,), "5m", "warning",
                  f"p99 time to first token above {slo.ttft_s:g} s",
                  f"p99 TTFT of {{{{ $labels.model_name }}}} on {{{{ $labels.instance }}}} is above "
                  f"{slo.ttft_s:g} s (from {slo.source}).", "high_latency", "vllm"),
        AlertRule("VllmTpotP99AboveSlo", f"{tpot} > {slo.tpot_s:g}", (tpot,), "5m", "warning",
                  f"p99 time per output token above {slo.tpot_s:g} s",
                  f"p99 TPOT of {{{{ $labels.model_name }}}} on {{{{ $labels.instance }}}} is above "
                  f"{slo.tpot_s:g} s (from {slo.source}).", "high_latency", "vllm"),
        AlertRule("GpuMemoryNearFull", f"{gpu} > {gpu_limit:g}", (gpu,), "5m", "warning",
                  "GPU memory near full (DCGM exporter)", f"GPU {{{{ $labels.gpu }}}} on {{{{ $labels.Hostname }}}}"
                  f" uses more than {gpu_limit:g} of its memory, past the share vLLM reserves "
                  "(gpu_memory_utilization).", "runtime_oom", "dcgm"),
        AlertRule("QwenopsGatewayErrors", f"({errors}) / ({chats}) > 0.05", (errors, chats), "5m", "warning",
                  "gateway chats fail", "More than 5% of the chats on {{ $labels.instance }} end in a server-side "
                  "error (qwenops_gateway_chat_errors_total by code).", "stream_interrupted", "gateway"),
    ]


def _runbook(profile: Profile, category: str) -> str:
    return f"qwenops troubleshoot -p {profile.name} (category: {category})"


def rules_groups(profile: Profile, slo: Slo) -> list[dict[str, Any]]:
    """The rule groups, as Prometheus (and a PrometheusRule's spec) reads them."""
    rules = [
        {
            "alert": rule.alert,
            "expr": rule.expr,
            "for": rule.for_,
            "labels": {"severity": rule.severity, "profile": profile.name},
            "annotations": {"summary": rule.summary, "description": rule.description,
                            "runbook": _runbook(profile, rule.category)},
        }
        for rule in alert_rules(profile, slo)
    ]
    return [{"name": f"qwenops-{profile.name}", "rules": rules}]


def prometheus_rules(profile: Profile, slo: Slo | None = None) -> str:
    slo = slo or default_slo()
    header = [f"Prometheus alert rules for profile {comment_value(profile.name)}, rendered by "
              "`qwenops render prometheus-rules` (docs/monitoring.md).",
              f"Latency SLO: TTFT p99 {slo.ttft_s:g} s, TPOT p99 {slo.tpot_s:g} s, from {slo.source}.",
              "GPU memory: NVIDIA dcgm-exporter's DCGM_FI_DEV_FB_USED/FREE; vLLM started with "
              "--disable-log-stats exports no vllm: series.",
              *(f"Note: {text}" for text in notes(profile, slo))]
    return yaml_document({"groups": rules_groups(profile, slo)}, header=header)


# ------------------------------------------------------------------------------------ scrape config


def _serve_metrics_target(profile: Profile) -> str:
    from qwenops.supervisor.options import parse_listen

    if profile.supervise.metrics is None:
        return f"127.0.0.1:{SERVE_METRICS_PORT}"
    host, port = parse_listen(profile.supervise.metrics)
    return f"{connect_host(host)}:{port}"


def scrape_targets(profile: Profile) -> dict[str, str]:
    """Job -> host:port of each target on the host the profile runs on."""
    return {
        JOB_VLLM: f"{connect_host(profile.host)}:{profile.port}",
        JOB_SERVE: _serve_metrics_target(profile),
        JOB_GATEWAY: f"127.0.0.1:{GATEWAY_PORT}",
    }


def scrape_config(profile: Profile, *, interval: str = "15s", rule_files: Sequence[str] = ("qwenops-rules.yml",),
                  targets: dict[str, str] | None = None) -> dict[str, Any]:
    targets = targets or scrape_targets(profile)
    jobs = [{"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()]
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": list(rule_files),
        "scrape_configs": jobs,
    }


def prometheus_config(profile: Profile, slo: Slo | None = None) -> str:
    slo = slo or default_slo()
    header = [f"Prometheus scrape config for profile {comment_value(profile.name)}, rendered by "
              "`qwenops render prometheus-config` (docs/monitoring.md).",
              "vLLM's /metrics, qwenops serve's (supervise.metrics) and the gateway's /metrics; the rules "
              "file is `qwenops render prometheus-rules -o qwenops-rules.yml`.",
              "If vLLM requires an API key, /metrics is not behind it (vLLM guards /v1 only).",
              "A gateway with a token (QWENOPS_GATEWAY_TOKEN) wants it on /metrics too: add to the "
              f"{JOB_GATEWAY} job `authorization: {{credentials_file: /etc/prometheus/qwenops-gateway-token}}`, "
              "a file holding the token, readable by Prometheus only.",
              *(f"Note: {text}" for text in notes(profile, slo))]
    return yaml_document(scrape_config(profile), header=header)


# ----------------------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries, stat, state-timeline
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str
    description: str
    source: str  # vllm, serve, gateway


def dashboard_panels(profile: Profile) -> list[Panel]:
    m = _model(profile)
    ri = "$__rate_interval"

    def quantiles(metric: str) -> tuple[tuple[str, str], ...]:
        return tuple((_quantile(q, metric, m, ri), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99))

    serve = f'job="{JOB_SERVE}"'
    return [
        Panel("End-to-end latency", "timeseries", quantiles("vllm:e2e_request_latency_seconds"), "s",
              "Whole-request latency quantiles (vllm:e2e_request_latency_seconds).", "vllm"),
        Panel("Time to first token", "timeseries", quantiles("vllm:time_to_first_token_seconds"), "s",
              "TTFT quantiles (vllm:time_to_first_token_seconds).", "vllm"),
        Panel("Time per output token", "timeseries", quantiles("vllm:request_time_per_output_token_seconds"), "s",
              "Per-request TPOT quantiles, as `qwenops tune` measures it.", "vllm"),
        Panel("Inter-token latency", "timeseries", quantiles("vllm:inter_token_latency_seconds"), "s",
              "Gaps between streamed tokens (vllm:inter_token_latency_seconds).", "vllm"),
        Panel("Token throughput", "timeseries",
              ((f"sum(rate(vllm:prompt_tokens_total{{{m}}}[{ri}]))", "prompt tokens/s"),
               (f"sum(rate(vllm:generation_tokens_total{{{m}}}[{ri}]))", "generated tokens/s")), "short",
              "Prompt and generated tokens per second.", "vllm"),
        Panel("Scheduler state", "timeseries",
              ((f"sum(vllm:num_requests_running{{{m}}})", "running"),
               (f"sum(vllm:num_requests_waiting{{{m}}})", "waiting")), "short",
              "Requests in the running batch and in the waiting queue.", "vllm"),
        Panel("KV cache usage", "timeseries", ((f"max(vllm:kv_cache_usage_perc{{{m}}})", "KV cache used"),),
              "percentunit", "Fraction of KV cache blocks in use (vllm:kv_cache_usage_perc).", "vllm"),
        Panel("Prefix cache hit rate", "timeseries",
              ((f"sum(rate(vllm:prefix_cache_hits_total{{{m}}}[{ri}])) / "
                f"sum(rate(vllm:prefix_cache_queries_total{{{m}}}[{ri}]))", "hit rate"),), "percentunit",
              "Prompt tokens found in the prefix cache, of those looked up (empty while idle).", "vllm"),
        Panel("Preemptions", "timeseries", ((f"sum(rate(vllm:num_preemptions_total{{{m}}}[{ri}]))", "preemptions/s"),),
              "short", "Requests preempted for lack of KV cache, per second.", "vllm"),
        Panel("Finish reasons", "timeseries",
              ((f"sum by (finished_reason) (rate(vllm:request_success_total{{{m}}}[{ri}]))", "{{finished_reason}}"),),
              "reqps", "Finished requests per second by reason (stop, length, abort, ...).", "vllm"),
        Panel("Queue time", "timeseries", quantiles("vllm:request_queue_time_seconds"), "s",
              "Time requests wait before they are scheduled (vllm:request_queue_time_seconds).", "vllm"),
        Panel("Supervisor state", "state-timeline", ((f"max by (state) (qwenops_serve_state{{{serve}}}) == 1",
                                                      "{{state}}"),), "short",
              "qwenops serve's state (STARTING, RUNNING, BACKOFF, FATAL, ...).", "serve"),
        Panel("Restarts by cause", "timeseries",
              ((f"sum by (cause) (increase(qwenops_serve_restarts_total{{{serve}}}[1h]))", "{{cause}}"),), "short",
              "vLLM restarts in the last hour, by cause.", "serve"),
        Panel("Stalls", "timeseries",
              ((f"sum(increase(qwenops_serve_stall_confirmations_total{{{serve}}}[1h]))", "stalls"),), "short",
              "Stalls confirmed by the progress watchdog in the last hour.", "serve"),
        Panel("Time to ready and uptime", "stat",
              ((f"max(qwenops_serve_time_to_ready_seconds{{{serve}}})", "time to ready"),
               (f"time() - max(qwenops_serve_start_time_seconds{{{serve}}})", "qwenops uptime")), "s",
              "How long the last start took, and how long qwenops serve has run.", "serve"),
        Panel("Gateway connections", "timeseries", (("sum(qwenops_gateway_connections)", "open connections"),),
              "short", "Open WebSocket connections.", "gateway"),
        Panel("Gateway chats", "timeseries",
              ((f"sum by (outcome) (rate(qwenops_gateway_chats_total[{ri}]))", "{{outcome}}"),
               (f"sum by (code) (rate(qwenops_gateway_chat_errors_total[{ri}]))", "error: {{code}}"),
               (f"sum(rate(qwenops_gateway_cancels_total[{ri}]))", "cancels")), "reqps",
              "Chats ended per second by outcome, errors by code, and cancels.", "gateway"),
        Panel("Gateway relay latency", "timeseries",
              tuple((f"histogram_quantile({q:g}, sum by (le) (rate(qwenops_gateway_relay_latency_seconds_bucket"
                     f"[{ri}])))", f"p{round(q * 100)}") for q in (0.5, 0.99)), "s",
              "Time from a server chunk to its frame sent to the client.", "gateway"),
        Panel("Gateway queue bytes", "timeseries", (("sum(qwenops_gateway_queue_bytes)", "queued bytes"),),
              "bytes", "Bytes waiting to be sent to clients.", "gateway"),
    ]


def grafana_dashboard(profile: Profile, slo: Slo | None = None) -> str:
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    slo = slo or default_slo()
    source = DataSourceRef(type_val="prometheus", uid="${datasource}")

    def new(kind: str) -> timeseries.Panel | stat.Panel | statetimeline.Panel:
        if kind == "stat":
            return stat.Panel()
        if kind == "state-timeline":
            return statetimeline.Panel()
        return timeseries.Panel()

    rows = {"vllm": "vLLM", "serve": "qwenops serve", "gateway": "qwenops gateway"}
    description = " ".join([f"vLLM and qwenops for profile {profile.name} (qwenops render grafana).",
                            *(f"Note: {text}." for text in notes(profile, slo))])
    board = (
        db.Dashboard(f"qwenops: {profile.name}")
        .uid(f"qwenops-{profile.name}")
        .description(description)
        .tags(["qwenops", "vllm"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )
    current = None
    ids = iter(range(1, 1000))
    for panel in dashboard_panels(profile):
        if panel.source != current:
            current = panel.source
            board = board.with_row(db.Row(rows[panel.source]).id(next(ids)))
        builder = (new(panel.kind).id(next(ids)).title(panel.title).description(panel.description)
                   .unit(panel.unit).datasource(source).height(8).span(8 if panel.kind != "state-timeline" else 24))
        for index, (expr, legend) in enumerate(panel.queries):
            builder = builder.with_target(prometheus.Dataquery().expr(expr).legend_format(legend)
                                          .ref_id(chr(ord("A") + index)).datasource(source))
        board = board.with_panel(builder)
    text: str = JSONEncoder(sort_keys=True, indent=2).encode(board.build())
    return text + "\n"
