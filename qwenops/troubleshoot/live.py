"""Evidence from a live server (`/health`, `/v1/models`, `/metrics`) and from the host it runs on.

Every request goes through qwenops.httpread (a byte cap, a total deadline, redirects only on the same
host) with the configured server's key (config/target.py); what a hostile server sends back is
evidence to describe, never a value taken on trust.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qwenops import untrusted
from qwenops.errors import BadInputError, CheckFailedError
from qwenops.httpread import AnswerTooLarge, NoAnswerInTime, Reply, get
from qwenops.untrusted import mask_url, printable
from qwenops.vllmmetrics import Histogram, MetricsFormatError, MetricsTooLarge, Snapshot, parse

if TYPE_CHECKING:
    from collections.abc import Callable

    from qwenops.config.target import ConfiguredServer

# The busiest processes kept from a host's sample: on a loaded host (2 cores, 14 runnable processes) a
# process that takes the CPU from vLLM may be the tenth busiest; the rules name those that compete with it.
BUSIEST_KEPT = 20
# A thread runnable (on a CPU or waiting for one) this share of the sample is a busy loop: it would take a whole
# core whenever it could, however little it got on a crowded host.
RUNNABLE_THROUGHOUT = 0.8


@dataclass(frozen=True)
class PathAnswer:
    """What one path answered, in words safe to show (credentials masked, control characters gone)."""

    path: str
    status: int | None  # None: no answer in time
    what: str  # "HTTP 302 to https://login.example/ (another host, not followed)", "an HTML page titled ..."
    html: bool = False
    redirect: bool = False


MAX_TOKENS_SEEN = 100_000_000  # a context, a cache or a block size beyond this is no real server's


@dataclass(frozen=True)
class Sizes:
    """What the server says about sizes, for fixes that carry numbers: the context (/v1/models), the KV
    cache (`vllm:cache_config_info`), and the requests it has served (histograms since it started).
    Each is None when the server did not say, or said something no vLLM writes."""

    max_model_len: int | None = None
    kv_tokens: int | None = None  # num_gpu_blocks x block_size (kv_cache_size_tokens where blocks are not given)
    kv_blocks: int | None = None
    block_size: int | None = None
    length_finished: float | None = None  # vllm:request_success_total{finished_reason="length"}
    refused_4xx: float | None = None  # http_requests_total{handler=/v1/(chat/)completions, status="4xx"}
    prompt_tokens: Histogram | None = None  # vllm:request_prompt_tokens
    max_tokens_asked: Histogram | None = None  # vllm:request_params_max_tokens
    generated_tokens: Histogram | None = None  # vllm:request_generation_tokens

    @property
    def largest_prompt_above(self) -> float | None:
        """A lower bound of the longest prompt served: the lower edge of the highest bucket with a prompt in it."""
        histogram = self.prompt_tokens
        if histogram is None or histogram.count <= 0:
            return None
        # Some prompt had more tokens than every bound whose cumulative count is short of the total.
        return max((bound for bound, cumulative in histogram.buckets if cumulative < histogram.count), default=0.0)

    def tokens_per_request(self) -> tuple[float, str] | None:
        """The KV tokens one request of those served holds at its end (mean prompt + mean answer budget),
        and how that was read, in words."""
        prompt = self.prompt_tokens.mean if self.prompt_tokens is not None else None
        if prompt is None:
            return None
        asked = self.max_tokens_asked.mean if self.max_tokens_asked is not None else None
        if asked is not None:
            return prompt + asked, f"mean prompt {prompt:.0f} + mean max_tokens {asked:.0f}"
        generated = self.generated_tokens.mean if self.generated_tokens is not None else None
        if generated is not None:
            return prompt + generated, f"mean prompt {prompt:.0f} + mean answer {generated:.0f} tokens"
        return None


@dataclass(frozen=True)
class ServerEvidence:
    base_url: str  # credentials masked
    health_status: int | None  # None: /health did not answer at all
    models: tuple[str, ...]
    metrics: Snapshot | None
    metrics_error: str | None = None
    answers: tuple[PathAnswer, ...] = ()
    key_state: str = "no key was sent"  # where QWENOPS_API_KEY stood for this server (ConfiguredServer.key_state)
    key_sent: bool = False
    sizes: Sizes = field(default_factory=Sizes)

    def answer(self, path: str) -> PathAnswer | None:
        return next((a for a in self.answers if a.path == path), None)

    @property
    def late(self) -> tuple[PathAnswer, ...]:
        """The paths that gave no answer in time (read_server's KEEP_LATE; /health's always)."""
        return tuple(a for a in self.answers if a.status is None)


def read_sizes(body: bytes | str | None, models_body: str | None) -> Sizes:
    """Sizes from a /metrics page that `parse` accepted and the /v1/models answer: only values that can
    be true (whole, positive counts below MAX_TOKENS_SEEN; histograms checked as vllmmetrics checks them)."""
    from qwenops.vllmmetrics import _histogram

    max_model_len = _model_len(models_body)
    if body is None:
        return Sizes(max_model_len=max_model_len)
    from prometheus_client.parser import text_string_to_metric_families

    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    families: dict[str, list[object]] = {}
    try:
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, []).extend(family.samples)
    except Exception:  # parse() read this page; a second reading that fails gives no sizes
        return Sizes(max_model_len=max_model_len)

    def histogram(name: str) -> Histogram | None:
        samples = families.get(name)
        if not samples:
            return None
        try:
            return _histogram(name, samples)  # type: ignore[arg-type]
        except ValueError:
            return None

    kv_tokens = kv_blocks = block_size = None
    for sample in families.get("vllm:cache_config_info", ()):
        labels = getattr(sample, "labels", {})
        blocks, size = _whole(labels.get("num_gpu_blocks")), _whole(labels.get("block_size"))
        if blocks is not None and size is not None and blocks * size <= MAX_TOKENS_SEEN:
            kv_tokens, kv_blocks, block_size = blocks * size, blocks, size
        elif _whole(labels.get("kv_cache_size_tokens")) is not None:
            kv_tokens = _whole(labels.get("kv_cache_size_tokens"))
        break
    length = refused = None
    for sample in families.get("vllm:request_success", ()):
        name, labels, value = sample.name, sample.labels, sample.value  # type: ignore[attr-defined]
        if name.endswith("_total") and labels.get("finished_reason") == "length" and _count(value) is not None:
            length = (length or 0.0) + float(value)
    for sample in families.get("http_requests", ()):
        name, labels, value = sample.name, sample.labels, sample.value  # type: ignore[attr-defined]
        if (name.endswith("_total") and labels.get("status") == "4xx"
                and labels.get("handler") in ("/v1/chat/completions", "/v1/completions")
                and _count(value) is not None):
            refused = (refused or 0.0) + float(value)
    return Sizes(max_model_len=max_model_len, kv_tokens=kv_tokens, kv_blocks=kv_blocks, block_size=block_size,
                 length_finished=length, refused_4xx=refused,
                 prompt_tokens=histogram("vllm:request_prompt_tokens"),
                 max_tokens_asked=histogram("vllm:request_params_max_tokens"),
                 generated_tokens=histogram("vllm:request_generation_tokens"))


def _whole(text: object) -> int | None:
    """A label's value as a positive whole number below MAX_TOKENS_SEEN, else None ("None", "abc", "-1")."""
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 12:
        return None
    value = int(text)
    return value if 0 < value <= MAX_TOKENS_SEEN else None


def _count(value: object) -> float | None:
    import math

    number = float(value) if isinstance(value, (int, float)) else math.nan
    return number if math.isfinite(number) and 0 <= number <= untrusted.MAX_METRIC_VALUE else None


def _model_len(text: str | None) -> int | None:
    """The first model's max_model_len in a /v1/models answer, when it is a whole number a server could have."""
    if text is None:
        return None
    try:
        listed = json.loads(text).get("data", [])
        value = listed[0].get("max_model_len") if isinstance(listed, list) and listed else None
    except (ValueError, AttributeError, RecursionError, TypeError):
        return None
    return value if type(value) is int and 0 < value <= MAX_TOKENS_SEEN else None


class MetricsUnreadable(CheckFailedError):
    """The server answered /metrics, but not with a Prometheus page (a status, an HTML page, bad text)."""

    code = "metrics_unreadable"


KEY_WHERE = ("set QWENOPS_API_KEY (in the env file, ./.env or the file QWENOPS_ENV_FILE names, or the "
             "environment) to the value of the server's --api-key (VLLM_API_KEY); qwenops sends it as "
             "Authorization: Bearer to the configured server only (QWENOPS_BASE_URL, else the profile's host and port)")


def auth_fix(status: int, key_state: str, key_sent: bool) -> str:
    """What a 401 or 403 means here, and where the key goes."""
    if status == 403:
        return (f"HTTP 403 Forbidden: the server, or a proxy in front of it, knows who is asking and refuses "
                f"({key_state}); a key is needed that this server allows: {KEY_WHERE}; or a proxy rule (an "
                f"address allow list, a path rule) forbids the request")
    if key_sent:
        return (f"the server refused the key qwenops sent ({key_state}): make QWENOPS_API_KEY the same value as "
                f"the server's --api-key (VLLM_API_KEY)")
    return f"the server wants an API key ({key_state}): {KEY_WHERE}"


def _target(server: ConfiguredServer | str) -> tuple[str, str | None, str]:
    """The URL, the key that goes with it (config/target.py: a bare URL gets none) and where the key stands."""
    from qwenops.config.target import url_and_key

    url, key = url_and_key(server)
    return url, key, "no key was sent" if isinstance(server, str) else server.key_state()


def _answer(path: str, reply: Reply) -> PathAnswer:
    return PathAnswer(path, reply.status, reply.describe(), html=reply.is_html, redirect=reply.is_redirect)


def read_server(server: ConfiguredServer | str, *, timeout_s: float | None = None,
                deadline_s: float | None = None, keep_late: bool = False) -> ServerEvidence:
    """Read /health, /v1/models and /metrics within one total deadline (untrusted.HTTP_TOTAL_DEADLINE_S).
    Nothing answers, an answer too large: exit 3. No answer in time: /health's is evidence (a server too
    busy to answer it), and so is every path's with KEEP_LATE (troubleshoot: a starved server is evidence
    beside the host's; `late` lists them); else exit 3. A reachable URL that is not vLLM: exit 2. Anything
    else the server answers is evidence (`answers`) for the rules to judge."""
    url, key, state = _target(server)
    budget = untrusted.HTTP_TOTAL_DEADLINE_S if deadline_s is None else deadline_s
    ends = time.monotonic() + budget

    answers: list[PathAnswer] = []

    def ask(path: str, read: Callable[[], Reply], *, late_is_evidence: bool) -> Reply | None:
        """PATH's reply, recorded in `answers`; None when it did not answer in time and LATE_IS_EVIDENCE."""
        try:
            reply = read()
        except NoAnswerInTime as exc:
            if not late_is_evidence:
                raise
            answers.append(PathAnswer(path, None, exc.message))
            return None
        answers.append(_answer(path, reply))
        return reply

    # A server too busy to answer /health is evidence, not a failure to connect.
    health_reply = ask("/health", lambda: get(url, "/health", api_key=key, deadline_s=budget, ends_at=ends,
                                              read_s=timeout_s), late_is_evidence=True)
    models_reply = ask("/v1/models", lambda: get(url, "/v1/models", api_key=key, deadline_s=budget, ends_at=ends,
                                                 read_s=timeout_s, accept="application/json"),
                        late_is_evidence=keep_late)
    models = _models(models_reply) if models_reply is not None else ()
    metrics_reply = ask("/metrics", lambda: _get_metrics(url, key, deadline_s=budget, ends_at=ends, read_s=timeout_s),
                        late_is_evidence=keep_late)
    snapshot: Snapshot | None = None
    if metrics_reply is not None:
        snapshot, problem = _metrics(metrics_reply)
    else:
        problem = answers[-1].what  # the late answer just recorded
    health = health_reply.status if health_reply is not None else None
    if health == 404 and metrics_reply is not None and (snapshot is None or not snapshot.is_vllm):
        raise BadInputError(f"{mask_url(url)} is not a vLLM server (no /health, no vllm: metrics)", field="--base-url")
    models_text = (models_reply.text() if models_reply is not None and models_reply.status == 200
                   and not models_reply.is_html else None)
    sizes = read_sizes(metrics_reply.body if metrics_reply is not None and snapshot is not None else None,
                       models_text)
    return ServerEvidence(mask_url(url), health, models, snapshot, problem, tuple(answers), state,
                          key_sent=any(r is not None and r.key_sent for r in (health_reply, models_reply)),
                          sizes=sizes)


def scrape_metrics(server: ConfiguredServer | str, *, timeout_s: float | None = None,
                   deadline_s: float | None = None) -> Snapshot:
    """One scrape of /metrics alone (a repeated reading: not /health and /v1/models each time).
    A Prometheus page or an error: MetricsUnreadable (exit 1) when the server answered something else,
    exit 3 when it did not answer in time or sent too much."""
    url, key, _ = _target(server)
    reply = _get_metrics(url, key, deadline_s=deadline_s, read_s=timeout_s)
    snapshot, problem = _metrics(reply)
    if snapshot is None:
        raise MetricsUnreadable(f"{mask_url(url)}/metrics {problem}", field="--base-url")
    return snapshot


def _get_metrics(url: str, key: str | None, *, deadline_s: float | None, read_s: float | None,
                 ends_at: float | None = None) -> Reply:
    return get(url, "/metrics", api_key=key, max_bytes=untrusted.MAX_METRICS_BYTES, deadline_s=deadline_s,
               ends_at=ends_at, read_s=read_s, accept="text/plain;version=0.0.4, */*;q=0.1")


def _metrics(reply: Reply) -> tuple[Snapshot | None, str | None]:
    """The snapshot, or why there is none in words ("answered HTTP 401", "is not Prometheus text: ...")."""
    if reply.status != 200 or reply.is_html:
        return None, f"answered {reply.describe()}"
    try:
        return parse(reply.body), None
    except MetricsTooLarge as exc:
        raise AnswerTooLarge(f"{reply.shown_url} has {exc}", field="--base-url",
                             hint="is this the right server?") from None
    except MetricsFormatError as exc:
        return None, f"is not Prometheus text: {exc}"


def _models(reply: Reply) -> tuple[str, ...]:
    """The served model names /v1/models lists, each a printable line, at most MAX_MODELS_SHOWN of them."""
    if reply.status != 200 or reply.is_html:
        return ()
    try:
        listed = json.loads(reply.text()).get("data", [])
    except (ValueError, AttributeError, RecursionError):
        return ()
    if not isinstance(listed, list):
        return ()
    names = []
    for entry in listed[: untrusted.MAX_MODELS_SHOWN]:
        name = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            shown = printable(name, keep_newlines=False)
            names.append(shown if len(shown) <= untrusted.MAX_MODEL_NAME_CHARS
                         else shown[: untrusted.MAX_MODEL_NAME_CHARS - 1] + "…")
    if len(listed) > untrusted.MAX_MODELS_SHOWN:
        names.append(f"… {len(listed) - untrusted.MAX_MODELS_SHOWN} more")
    return tuple(names)


@dataclass(frozen=True)
class BusyProcess:
    pid: int
    name: str
    cpu_percent: float  # of one core
    # From the scheduler's figures over the same sample (Linux's /proc/PID/task/*/schedstat), None where the OS
    # does not say: the time its threads were runnable but waited for a CPU (run-queue delay), in % of a core;
    # and its busy loops: threads runnable (on a CPU or waiting for one) at least RUNNABLE_THROUGHOUT of the
    # sample, which would take a whole core each however loaded the host is.
    waiting_percent: float | None = None
    busy_threads: int | None = None


@dataclass(frozen=True)
class HostEvidence:
    cpu_count: int
    load_1m: float | None
    cpu_busy_percent: float  # all cores, sampled over the interval
    steal_percent: float | None  # a VM's CPU taken by the hypervisor
    busiest: tuple[BusyProcess, ...]
    ram_available_gib: float
    ram_total_gib: float
    swap_used_gib: float
    gpu_error: str | None
    gpu_processes: tuple[tuple[int, str, float | None], ...] = field(default_factory=tuple)  # pid, name, MiB
    gpu_memory_used_mib: float | None = None
    gpu_memory_total_mib: float | None = None
    # From the scheduler's figures (schedstat), None where the OS does not say: the threads runnable (on a CPU
    # or waiting for one) on average over the sample, all processes this one can see together; and the fair
    # share, in % of a core: what a thread runnable throughout the sample got (their time on a CPU over their
    # time runnable, all together). It counts load this process cannot see (other containers on the host).
    runnable: float | None = None
    fair_share_percent: float | None = None


def _scheduled_ns(pid: int) -> dict[str, tuple[int, int]] | None:
    """Nanoseconds each of PID's threads ran on a CPU and waited for one since it started (schedstat's first
    two fields, /proc/PID/task/TID/schedstat), or None where the OS does not say (not Linux, a process gone)."""
    from pathlib import Path

    threads: dict[str, tuple[int, int]] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            fields = (task / "schedstat").read_bytes()[:256].split()
            threads[task.name] = (int(fields[0]), int(fields[1]))
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return threads or None


@dataclass(frozen=True)
class _Asked:
    """What one process's threads did over the sample, in % of a core."""

    ran: float
    waited: float
    busy_threads: int


# pid -> ({thread id: (ns on a CPU, ns waiting for one)}, when they were read, time.monotonic_ns())
_Sample = dict[int, tuple[dict[str, tuple[int, int]], int]]


def _sample_scheduled(pids: list[int]) -> _Sample:
    """Each pid's threads' (ran ns, waited ns), and when they were read (ns), for the pids the OS says it for."""
    sample: _Sample = {}
    for pid in pids:
        seen = _scheduled_ns(pid)
        if seen is not None:
            sample[pid] = (seen, time.monotonic_ns())
    return sample


def _asked(before: _Sample, after: _Sample) -> dict[int, _Asked]:
    """What each process sampled twice did between the two readings, its busy loops counted."""
    asked: dict[int, _Asked] = {}
    for pid, (threads, when) in after.items():
        if pid not in before or when <= before[pid][1]:
            continue
        earlier, elapsed = before[pid][0], when - before[pid][1]
        ran = waited = 0
        busy = 0
        for tid, (thread_ran, thread_waited) in threads.items():
            first = earlier.get(tid, (0, 0))  # a thread born in the sample: from its start
            more_ran, more_waited = max(0, thread_ran - first[0]), max(0, thread_waited - first[1])
            ran, waited = ran + more_ran, waited + more_waited
            busy += more_ran + more_waited >= RUNNABLE_THROUGHOUT * elapsed
        asked[pid] = _Asked(100.0 * ran / elapsed, 100.0 * waited / elapsed, busy)
    return asked


def read_host(sample_s: float = 0.5) -> HostEvidence:
    """CPU contention (load, steal, the busiest processes and how long they waited for a CPU), memory
    pressure and the GPU's other users."""
    import psutil

    from qwenops.hardware.nvml import read_gpus
    from qwenops.units import GIB

    processes = list(psutil.process_iter(["pid", "name"]))
    for process in processes:
        try:
            process.cpu_percent(None)  # the first call starts the process's sample
        except psutil.Error:
            continue
    pids = [process.pid for process in processes]
    before = _sample_scheduled(pids)
    times = psutil.cpu_times_percent(interval=sample_s)
    after = _sample_scheduled(pids)
    asked = _asked(before, after)
    busy: list[BusyProcess] = []
    for process in processes:
        try:
            percent = process.cpu_percent(None)
        except psutil.Error:
            continue
        seen = asked.get(process.pid)
        percent = seen.ran if seen is not None else percent  # the scheduler's nanoseconds over psutil's ticks
        if percent > 0 and process.pid != os.getpid():
            busy.append(BusyProcess(process.pid, process.info.get("name") or "?", percent,
                                    seen.waited if seen else None, seen.busy_threads if seen else None))
    busy.sort(key=lambda p: p.cpu_percent, reverse=True)
    runnable = sum(seen.ran + seen.waited for seen in asked.values())  # % of a core
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    gpus = read_gpus()
    device = next((d for d in gpus.devices if not d.lost), None)
    gpu_processes = tuple((p.pid, p.name, p.used_memory_mib) for p in device.processes) if device else ()
    return HostEvidence(
        cpu_count=psutil.cpu_count() or 1, load_1m=load, cpu_busy_percent=100.0 - times.idle,
        steal_percent=getattr(times, "steal", None), busiest=tuple(busy[:BUSIEST_KEPT]),
        ram_available_gib=memory.available / GIB, ram_total_gib=memory.total / GIB, swap_used_gib=swap.used / GIB,
        gpu_error=gpus.init_error, gpu_processes=gpu_processes,
        gpu_memory_used_mib=device.memory_used_mib if device else None,
        gpu_memory_total_mib=device.memory_total_mib if device else None,
        runnable=runnable / 100.0 if runnable else None,
        fair_share_percent=100.0 * sum(seen.ran for seen in asked.values()) / runnable if runnable else None,
    )
