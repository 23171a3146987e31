"""Findings from a live server's answers and from the host, in the classifier's shape (qwenops.vllmlog).

Thresholds are the article's FAQ made measurable: "latency too high -> CPU starved" becomes "the CPU
was this busy, these processes used it"; "GPU out of memory -> too many concurrent requests" becomes
"vLLM preempted N requests; here is the max_num_seqs that keeps that at zero".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qwenops.troubleshoot.live import BusyProcess, HostEvidence, ServerEvidence, Sizes, auth_fix
from qwenops.vllmlog.classify import GENERIC_RANK, Evidence, Finding, Flags, preemption_fix

# A CPU-bound vLLM front end (tokenising, detokenising, scheduling) slows every token when another
# process takes its core; these are the levels at which that shows up in TTFT and ITL.
BUSY_CPU_PERCENT = 90.0
OTHER_PROCESS_PERCENT = 50.0  # of one core: named on a contended host, however many other processes run
# On a host with more runnable threads than cores nobody gets half a core (2 cores, 14 runnable: a seventh of a
# core each), so a process is also named there for what it takes against a fair share (what a thread runnable
# throughout the sample got, HostEvidence.fair_share_percent; else cores / the 1-minute load), or for a busy
# loop (a thread runnable throughout the sample, BusyProcess.busy_threads): it takes a core wherever it can.
FAIR_SHARE_TIMES = 2.0  # taking this many fair shares is taking the CPU from the others
MIN_NAMED_PERCENT = 5.0  # less than a twentieth of a core is the sample's noise (one tick in 0.5 s is 2%)
STEAL_PERCENT = 10.0
KV_FULL = 0.95
NEAR_CONTEXT = 0.9  # a prompt past this share of max_model_len leaves an answer almost no room


@dataclass(frozen=True)
class LogFacts:
    """Numbers a server's or a client's log states that the findings' fixes carry (run.py collects them)."""

    kv_tokens: int | None = None  # "GPU KV cache size: N tokens" (CPU on the CPU engine)
    kv_line: str | None = None


def _metric(name: str, value: float) -> Evidence:
    return Evidence(f"metric {name}", f"{name} = {value:g}")


def answer_findings(server: ServerEvidence) -> list[Finding]:
    """A 401/403 (`auth`), and a redirect or an HTML page where vLLM answers JSON or text (`proxy_answered`)."""
    found: list[Finding] = []
    refused = [a for a in server.answers if a.status in (401, 403)]
    if refused:
        status = 403 if any(a.status == 403 for a in refused) else 401
        found.append(Finding(
            "auth", "error", "the server refuses qwenops' requests: an API key problem",
            (*(Evidence(f"GET {server.base_url}{a.path}", a.what) for a in refused),
             Evidence("qwenops", server.key_state)),
            auth_fix(status, server.key_state, server.key_sent)))
    fronted = [a for a in server.answers
               if a.status not in (401, 403) and (a.redirect or (a.html and a.status is not None and a.status < 500))]
    if fronted:
        found.append(Finding(
            "proxy_answered", "error", "something in front of the server answered, not vLLM",
            tuple(Evidence(f"GET {server.base_url}{a.path}", a.what) for a in fronted),
            "a login proxy or another web server answers at this URL (vLLM answers /health, /v1/models and "
            "/metrics itself, without redirects or HTML): point --base-url (or QWENOPS_BASE_URL) at vLLM's own "
            "host and port, or let the proxy pass these paths through"))
    return found


def server_findings(server: ServerEvidence, flags: Flags, facts: LogFacts | None = None) -> list[Finding]:
    found = answer_findings(server)
    health = server.health_status
    front = {a.path for a in server.answers if a.status in (401, 403) or a.redirect or a.html}
    if health is None or health >= 500:
        answer = server.answer("/health")
        seen = answer.what if answer is not None else "no answer in time"
        found.append(Finding(
            "engine_dead", "error", "the server is up but its engine is not",
            (Evidence(f"GET {server.base_url}/health", seen),),
            "vLLM answers /health 503 while its engine is dead or hung: read the server's log "
            "(`qwenops troubleshoot --journal UNIT` or `--log FILE`) for the first error", retryable=True,
            rank=GENERIC_RANK))
    metrics = server.metrics
    if metrics is None:
        found += _metrics_missing(server, front)
        return found
    if not metrics.is_vllm:
        found.append(Finding("metrics_unavailable", "info", "no metrics to judge load and latency by",
                             (Evidence(f"GET {server.base_url}/metrics", "a Prometheus page without vllm: series"),),
                             "vLLM writes no vllm: series when started with --disable-log-stats: start it without "
                             "that flag if you want them (qwenops status uses them)"))
    if metrics.invalid:
        found.append(Finding(
            "metrics_invalid", "error", "the server's /metrics has values no working vLLM writes",
            tuple(Evidence(f"GET {server.base_url}/metrics", why) for why in metrics.invalid.values()),
            "these readings were left out, not trusted: something other than vLLM answers /metrics, a proxy "
            "rewrites it, or the server is broken; read it by hand (`curl -s URL/metrics | grep NAME`)"))
    preemptions = metrics.counters.get("preemptions", 0.0)
    if preemptions > 0:
        found.append(preemption_finding(preemptions, server.sizes, flags, facts or LogFacts()))
    found += too_long_findings(server.sizes, server.base_url)
    usage, waiting = metrics.gauges.get("kv_cache_usage"), metrics.gauges.get("requests_waiting", 0.0)
    if usage is not None and usage >= KV_FULL and waiting > 0:
        found.append(Finding(
            "kv_cache_full", "warning", "the KV cache is full and requests are waiting for it",
            (_metric("vllm:kv_cache_usage_perc", usage), _metric("vllm:num_requests_waiting", waiting)),
            "more concurrency than the cache holds: lower max_num_seqs or max_model_len so requests queue "
            "in the client instead, or use a smaller (quantized) checkpoint to free memory for the cache"))
    return found


def safe_max_num_seqs(kv_tokens: int, block_size: int | None, per_request: float) -> int:
    """How many requests of PER_REQUEST tokens the KV cache holds at once, at least 1. With the block size
    known the count is exact: a request holds whole blocks (ceil(tokens / block)), and vLLM keeps one
    block of the pool for itself (the null block), so B requests never run out of blocks."""
    if block_size:
        usable = kv_tokens // block_size - 1
        return max(1, usable // max(1, math.ceil(per_request / block_size)))
    return max(1, math.floor(kv_tokens / per_request))


def preemption_finding(preemptions: float, sizes: Sizes, flags: Flags, facts: LogFacts) -> Finding:
    """vLLM preempted requests: the max_num_seqs the cache holds, from the cache's size and the requests'."""
    evidence = [_metric("vllm:num_preemptions_total", preemptions)]
    kv_tokens, block_size = sizes.kv_tokens, sizes.block_size
    if kv_tokens is not None:
        blocks = f" ({sizes.kv_blocks} blocks of {block_size})" if sizes.kv_blocks and block_size else ""
        evidence.append(Evidence("metric vllm:cache_config_info", f"KV cache {kv_tokens:,} tokens{blocks}"))
    elif facts.kv_tokens is not None:
        kv_tokens = facts.kv_tokens
        evidence.append(Evidence("log", facts.kv_line or f"KV cache size: {kv_tokens:,} tokens"))
    per = sizes.tokens_per_request()
    title = "requests were preempted: the KV cache is too small for the batch"
    if kv_tokens is None or per is None or per[0] <= 0:
        return Finding("kv_cache_preemption", "warning", title, tuple(evidence),
                       f"{preemption_fix(flags)} (the article's 'out of memory' row, before it is an OOM)")
    tokens, how = per
    evidence.append(Evidence("metric vllm:request_prompt_tokens", f"{tokens:.0f} tokens a request ({how})"))
    safe = safe_max_num_seqs(kv_tokens, block_size, tokens)
    now = flags.get("max_num_seqs")
    if block_size:
        need = math.ceil(tokens / block_size)
        room = (f"a request like those served holds {tokens:.0f} tokens = {need} blocks of {block_size}, and the "
                f"KV cache has {kv_tokens // block_size - 1} blocks for requests ({kv_tokens:,} tokens, one block "
                f"kept by vLLM): {safe} fit at once")
    else:
        room = (f"a request like those served holds {tokens:.0f} tokens and the KV cache {kv_tokens:,}: "
                f"{safe} fit at once")
    if tokens > kv_tokens - (block_size or 0):
        fix = (f"one request ({tokens:.0f} tokens) needs more than the whole KV cache ({kv_tokens:,} tokens): give the "
               f"cache more memory (gpu_memory_utilization; VLLM_CPU_KVCACHE_SPACE on the CPU engine), or lower "
               f"max_tokens and trim prompts; and set max_num_seqs to 1 (`--set max_num_seqs=1`) meanwhile")
    elif isinstance(now, int) and now <= safe:
        fix = (f"max_num_seqs {now} already fits requests of the mean size ({room}): longer requests than the mean "
               f"preempt; shorten max_model_len or the longest answers, or give the cache more memory")
    else:
        change = f"from {now} to {safe}" if isinstance(now, int) else f"to {safe}"
        fix = (f"lower max_num_seqs {change} (`--set max_num_seqs={safe}`): {room}; or give the cache more memory "
               f"(gpu_memory_utilization; VLLM_CPU_KVCACHE_SPACE on the CPU engine) or shorten the answers. "
               f"Preempted requests are recomputed, so latency jumps before anything fails (the article's 'out of "
               f"memory' row)")
        return Finding("kv_cache_preemption", "warning", title, tuple(evidence), fix,
                       change={"max_num_seqs": safe})
    return Finding("kv_cache_preemption", "warning", title, tuple(evidence), fix)


def too_long_findings(sizes: Sizes, base_url: str) -> list[Finding]:
    """Prompts that meet max_model_len: answers cut at the context's end (finish_reason "length") beside
    prompts within NEAR_CONTEXT of it. vLLM 0.32 logs the 400 for a longer prompt only at DEBUG, so the
    server's counters (and a client's log, run.py) are the evidence."""
    limit, above = sizes.max_model_len, sizes.largest_prompt_above
    if limit is None or above is None or not sizes.length_finished or above < NEAR_CONTEXT * limit:
        return []
    evidence = [Evidence(f"GET {base_url}/v1/models", f"max_model_len {limit:,}"),
                Evidence("metric vllm:request_prompt_tokens", f"a prompt of more than {above:,.0f} tokens"),
                _metric('vllm:request_success_total{finished_reason="length"}', sizes.length_finished)]
    if sizes.refused_4xx:
        evidence.append(Evidence("metric http_requests_total",
                                 f"{sizes.refused_4xx:g} chat/completion requests answered 4xx (a longer prompt is "
                                 f"refused with 400)"))
    return [Finding("request_too_long", "warning", "prompts meet max_model_len", tuple(evidence),
                    too_long_fix(limit, int(above), sizes))]


def too_long_fix(limit: int, prompt: int, sizes: Sizes, *, at_least: bool = False) -> str:
    """The length row's fix, with the context and the prompt seen."""
    answer = sizes.max_tokens_asked.mean if sizes.max_tokens_asked is not None else None
    answer = answer if answer is not None else (sizes.generated_tokens.mean if sizes.generated_tokens else None)
    need = prompt + math.ceil(answer) if answer else None
    raise_to = (f"raise max_model_len to at least {need:,} (`--set max_model_len={need}`: the prompt plus the "
                f"{math.ceil(answer or 0)} tokens asked for), if the model's max_position_embeddings and the KV cache "
                f"allow it" if need and need > limit else
                "raise max_model_len above the longest prompt plus its max_tokens, if the model's "
                "max_position_embeddings and the KV cache allow it")
    shown = f"at least {prompt:,}" if at_least else f"more than {prompt:,}"
    return (f"prompts of {shown} tokens meet max_model_len {limit:,}: the answer gets what is left of the context "
            f"(finish_reason \"length\") and a longer prompt is refused with HTTP 400. Trim the prompts (or lower "
            f"max_tokens), or {raise_to}; vLLM keeps serving")


def _metrics_missing(server: ServerEvidence, front: set[str]) -> list[Finding]:
    """/metrics gave no page: said once, and never blamed on --disable-log-stats (that flag leaves the
    page there, without vllm: series)."""
    if "/metrics" in front or not server.metrics_error:
        return []  # the auth or proxy finding above names it
    evidence = (Evidence(f"GET {server.base_url}/metrics", server.metrics_error),)
    if server.metrics_error.startswith("is not Prometheus text"):
        return [Finding("metrics_invalid", "error", "the server's /metrics is not Prometheus text", evidence,
                        "vLLM's /metrics is Prometheus text: something else answers at this URL, or a proxy "
                        "rewrites the page; read it by hand (`curl -s URL/metrics | head`)")]
    return [Finding("metrics_unavailable", "warning", "no metrics to judge load and latency by", evidence,
                    "vLLM always serves /metrics: a proxy in front of it may not pass the path, or the server "
                    "failed to answer it; read it by hand (`curl -si URL/metrics | head`)")]


def host_findings(host: HostEvidence, *, vllm_pids: frozenset[int]) -> list[Finding]:
    """CPU contention, steal, memory pressure and other processes on the GPU.

    On a contended host (CPU busy, or more runnable threads than cores), a process that is not vLLM is named
    when it takes half a core, or FAIR_SHARE_TIMES a fair share, or runs a busy loop (a thread runnable
    throughout the sample), and takes at least MIN_NAMED_PERCENT of a core. An idle host names nobody,
    whatever a process takes there: a core to spare is no contention."""
    found: list[Finding] = []
    runnable = host.runnable if host.runnable is not None else host.load_1m
    loaded = any(n is not None and n > host.cpu_count for n in (runnable, host.load_1m))
    fair = host.fair_share_percent  # % of a core
    if fair is None:
        fair = 100.0 * host.cpu_count / max(float(host.cpu_count), host.load_1m or 0.0)

    def competes(p: BusyProcess) -> bool:
        if p.pid in vllm_pids or p.cpu_percent < MIN_NAMED_PERCENT:
            return False
        return (p.cpu_percent >= OTHER_PROCESS_PERCENT or p.cpu_percent >= FAIR_SHARE_TIMES * fair
                or bool(p.busy_threads))

    others = [p for p in host.busiest if competes(p)]
    if others and (host.cpu_busy_percent >= BUSY_CPU_PERCENT or loaded):
        shown = f"CPU {host.cpu_busy_percent:.0f}% busy on {host.cpu_count} cores"
        shown += f", load {host.load_1m:.1f}" if host.load_1m is not None else ""
        if host.runnable is not None:
            shown += f", {host.runnable:.1f} threads runnable on average"
        if fair < 100.0:
            shown += f": a fair share is {fair:.0f}% of a core each"
        evidence = [Evidence("host", shown)]
        evidence += [Evidence("host", f"pid {p.pid} {p.name}: {p.cpu_percent:.0f}% of a core" + _asked(p))
                     for p in others]
        vllm = [p for p in host.busiest if p.pid in vllm_pids]
        if vllm:
            evidence.append(Evidence("host", f"vLLM's own processes: {sum(p.cpu_percent for p in vllm):.0f}% of a "
                                             f"core in all ({len(vllm)} busy)"))
        pids = " ".join(str(p.pid) for p in others)
        named = ", ".join(f"{p.name} (pid {p.pid})" for p in others)
        found.append(Finding(
            "high_latency_cpu", "warning", "other processes compete with vLLM for the CPU",
            tuple(evidence),
            f"vLLM's API server and scheduler need a free core each to keep TTFT and ITL low: stop or move "
            f"{named}, or lower their priority (`renice +10 -p {pids}`)"))
    if host.steal_percent is not None and host.steal_percent >= STEAL_PERCENT:
        found.append(Finding(
            "high_latency_cpu", "warning", "the hypervisor takes CPU time from this VM",
            (Evidence("host", f"CPU steal {host.steal_percent:.0f}%"),),
            "a noisy neighbour: no setting of qwenops or vLLM fixes steal; use dedicated vCPUs or another host"))
    if host.swap_used_gib > 1.0 and host.ram_available_gib < 0.1 * host.ram_total_gib:
        found.append(Finding(
            "host_memory_pressure", "warning", "the host is short of RAM and swapping",
            (Evidence("host", f"{host.ram_available_gib:.1f} of {host.ram_total_gib:.1f} GiB RAM available, "
                              f"{host.swap_used_gib:.1f} GiB swap used"),),
            "vLLM's processes stall when their pages are swapped out: free RAM, or lower cpu_offload_gb / "
            "VLLM_CPU_KVCACHE_SPACE if they are set"))
    strangers = [(pid, name, mib) for pid, name, mib in host.gpu_processes if pid not in vllm_pids]
    if strangers:
        listed = ", ".join(f"{name} (pid {pid}" + (f", {mib:.0f} MiB)" if mib else ")") for pid, name, mib in strangers)
        found.append(Finding(
            "insufficient_free_memory", "warning", "other processes hold GPU memory",
            (Evidence("host", f"on the GPU: {listed}"),),
            "vLLM reserves gpu_memory_utilization of the *total* memory at start: stop them, or lower "
            "gpu_memory_utilization by what they hold (`qwenops doctor` computes the value)"))
    return found


def _asked(p: BusyProcess) -> str:
    """What the scheduler says the process asked for beyond what it got, in words."""
    if p.waiting_percent is None or p.waiting_percent < 1:
        return ""
    loops = (f"; {p.busy_threads} busy loop{'s' if p.busy_threads > 1 else ''}, runnable throughout"
             if p.busy_threads else "")
    return f" (and {p.waiting_percent:.0f}% more waiting for a CPU{loops})"


def vllm_process_ids() -> frozenset[int]:
    """Processes whose command line or name says vLLM (API server, EngineCore, workers)."""
    import psutil

    pids: set[int] = set()
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        name = process.info.get("name") or ""
        cmdline = " ".join(process.info.get("cmdline") or ())
        if "vllm" in name.lower() or "vllm" in cmdline.lower():
            pids.add(process.info["pid"])
    return frozenset(pids)
