"""`qwenops troubleshoot`'s core: read every source given, classify, and rank the findings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from qwenops.troubleshoot.sources import LogSource, open_source
from qwenops.vllmlog.classify import CANDIDATE, SERVED, Finding, Flags, LogClassifier
from qwenops.vllmlog.lines import compile_scanner, scan_log

if TYPE_CHECKING:
    from qwenops.config.profile import Profile
    from qwenops.config.target import ConfiguredServer
    from qwenops.troubleshoot.live import PathAnswer, Sizes

_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class SourceRead:
    """One source and what was taken from it."""

    name: str
    lines: int | None = None  # for logs
    note: str | None = None


@dataclass(frozen=True)
class TroubleshootReport:
    """The `data` of `qwenops troubleshoot --json`: findings, most important first."""

    ok: bool  # no finding of severity error
    findings: tuple[Finding, ...]
    sources: tuple[SourceRead, ...]
    profile: str | None


@dataclass(frozen=True)
class TroubleshootRequest:
    logs: tuple[LogSource, ...] = ()
    host: bool = False
    profile: str | None = None
    flags: Flags | None = None  # the profile's values a fix may name (profile_flags)
    check_profile: bool = False  # add what the profile's own values support (profile_rules.py)
    probe: bool = False  # send real requests (probes.py)
    client_timeout_s: float | None = None  # the client's whole-answer timeout (default: the profile's)
    server: ConfiguredServer | None = None  # the live server to read, with its key: every request carries it


# Lines the classifier (vllmlog, which reads any version's words) does not ask for, whose numbers a fix
# carries: the KV cache's size, and vLLM 0.32's refusal of a prompt that meets max_model_len as a client
# logs it (the server logs that refusal only at DEBUG).
_KV_SIZE = re.compile(r"(?:GPU|CPU|XPU|TPU) KV cache size: (?P<tokens>[\d,]{1,16}) tokens")
_CONTEXT_400 = re.compile(r"maximum context length is (?P<limit>\d{1,9}) tokens\. However, your (?:prompt|request) "
                          r"(?:contains|has) (?:at least )?(?P<prompt>\d{1,9}) input tokens")
_FACTS = re.compile(f"{_KV_SIZE.pattern}|{_CONTEXT_400.pattern}".replace("(?P<", "(?P<x").encode())


def _scan_pattern() -> object:
    """The classifier's candidates and the lines of _FACTS, in one automaton (RE2 where it is installed)."""
    facts = re.sub(rb"\(\?P<\w+>", b"(?:", _FACTS.pattern)
    return compile_scanner(bytes(cast("Any", CANDIDATE).pattern) + b"|" + facts)


_SCAN = _scan_pattern()


@dataclass
class _Facts:
    kv_tokens: int | None = None
    kv_line: str | None = None
    too_long: list[tuple[int, int, str, str]] | None = None  # (limit, prompt, line, "LOG line N")

    def feed(self, text: str, number: int, label: str = "log") -> None:
        kv = _KV_SIZE.search(text)
        if kv is not None:
            tokens = int(kv.group("tokens").replace(",", "") or 0)
            if 0 < tokens <= 10**12:
                self.kv_tokens, self.kv_line = tokens, text[:300]
        refused = _CONTEXT_400.search(text)
        if refused is not None:
            self.too_long = [*(self.too_long or []), (int(refused.group("limit")), int(refused.group("prompt")),
                                                      text[:300], f"{label} line {number}")]


def classify_source(source: LogSource, flags: Flags, facts: _Facts | None = None) -> tuple[list[Finding], SourceRead]:
    classifier = LogClassifier(flags=flags)
    lines = 0
    facts = facts if facts is not None else _Facts()
    with open_source(source) as stream:
        served = False  # a request line before a line only _FACTS wanted still stands before the next one
        for line in scan_log(stream, _SCAN, SERVED):  # type: ignore[arg-type]
            if not line.text or CANDIDATE.search(line.text.encode()) or \
                    (line.spaced and CANDIDATE.search(line.spaced.encode())):
                classifier.feed(replace(line, served_before=True) if served and not line.served_before else line)
                served = False  # only the lines the classifier asks for, as before
            else:
                served = served or line.served_before
            if line.text:
                facts.feed(line.text, line.number, source.label)
            lines = line.number  # the last one is scan_log's count of every line
    if lines == 0 and source.kind in ("journal", "docker"):
        from qwenops.errors import UnreachableError

        raise UnreachableError(f"the {source.label} has no lines", field=source.option,
                               hint="is the name right? (`journalctl -u NAME` / `docker ps -a`)")
    findings = [_labelled(f, source) for f in classifier.findings()]
    return findings, SourceRead(source.label, lines=lines)


def _too_long_from_log(facts: _Facts, sizes: Sizes | None) -> list[Finding]:
    """A client's 400 for a prompt that meets max_model_len (vLLM 0.32's words): the context and the
    largest prompt refused; the live server's counters, when read, give the max_tokens asked for."""
    if not facts.too_long:
        return []
    from qwenops.troubleshoot.live import Sizes
    from qwenops.troubleshoot.rules import too_long_fix
    from qwenops.vllmlog.classify import Evidence

    limit, prompt, text, where = max(facts.too_long, key=lambda seen: seen[1])
    return [Finding("request_too_long", "warning", "a prompt met max_model_len and was refused (HTTP 400)",
                    (Evidence(where, text),), too_long_fix(limit, prompt, sizes or Sizes(), at_least=True),
                    count=len(facts.too_long))]


def _labelled(finding: Finding, source: LogSource) -> Finding:
    """Evidence from a log names the log, so findings from two sources stay told apart."""
    from qwenops.vllmlog.classify import Evidence

    evidence = tuple(Evidence(e.source.replace("log line", f"{source.label} line", 1), e.quote)
                     for e in finding.evidence)
    return replace(finding, evidence=evidence)


def run_troubleshoot(request: TroubleshootRequest) -> TroubleshootReport:
    flags = dict(request.flags or {})
    findings: list[Finding] = []
    sources: list[SourceRead] = []
    facts = _Facts()
    for source in request.logs:
        found, read = classify_source(source, flags, facts)
        findings += found
        sources.append(read)
    late: list[PathAnswer] = []  # the live server's paths that did not answer in time
    server_url = ""
    # A client's 400 with its numbers goes first: merged with the classifier's finding of the same line, its fix
    # (with the prompt and the context) is the one kept.
    if request.server is not None:
        from qwenops import untrusted
        from qwenops.troubleshoot.live import read_server
        from qwenops.troubleshoot.rules import LogFacts, server_findings

        # The whole budget for each read too: a starved server that answers in 20 s has answered.
        server = read_server(request.server, timeout_s=untrusted.HTTP_TOTAL_DEADLINE_S, keep_late=True)
        late, server_url = list(server.late), server.base_url
        said = {answer.what for answer in late}
        findings = _too_long_from_log(facts, server.sizes) + findings
        # A finding whose only evidence is a path that did not answer in time (/health's "engine_dead", /metrics'
        # "metrics_unavailable") says what the one finding on the late answers says (_late_finding).
        findings += [f for f in server_findings(server, flags, LogFacts(facts.kv_tokens, facts.kv_line))
                     if not (f.evidence and all(e.quote in said for e in f.evidence))]
        sources.append(SourceRead(f"server {server.base_url}", note=_server_note(server.health_status, late)))
    else:
        findings = _too_long_from_log(facts, None) + findings
    if request.check_profile and request.profile is not None:
        from qwenops.config.loader import load_profile
        from qwenops.troubleshoot.profile_rules import profile_findings

        findings += profile_findings(load_profile(request.profile))
        sources.append(SourceRead(f"profile {request.profile}"))
    if request.host:
        from qwenops.troubleshoot.live import read_host
        from qwenops.troubleshoot.rules import host_findings, vllm_process_ids

        findings += host_findings(read_host(), vllm_pids=vllm_process_ids())
        sources.append(SourceRead("this host"))
    if late:
        if not findings:  # nothing else to say: the server could not be read, as before (exit 3)
            from qwenops.httpread import NoAnswerInTime

            raise NoAnswerInTime(late[0].what, field="--base-url")
        findings.append(_late_finding(server_url, late, findings, host_read=request.host))
    if request.probe and late:
        sources.append(SourceRead("probes", note="not sent: the server did not answer in time"))
    elif request.probe:
        findings += _probe(request, contended=any(f.category == "high_latency_cpu" for f in findings),
                           preempted=any(f.category == "kv_cache_preemption" for f in findings))
        sources.append(SourceRead("probes", note="one long answer, one ordinary answer, a concurrency ramp"))
    ranked = rank(_merged(findings))
    return TroubleshootReport(ok=not any(f.severity == "error" for f in ranked), findings=tuple(ranked),
                              sources=tuple(sources), profile=request.profile)


# What starves a server of the time to answer: the host's findings that explain a late answer.
_STARVED_BY = ("high_latency_cpu", "host_memory_pressure")


def _server_note(health: int | None, late: Sequence[PathAnswer]) -> str:
    if late:
        return "did not answer " + ", ".join(answer.path for answer in late) + " in time"
    return f"/health {health}"


def _late_finding(base_url: str, late: Sequence[PathAnswer], found: Sequence[Finding], *, host_read: bool) -> Finding:
    """The server accepted the connection and did not answer within qwenops' deadline: a warning that follows
    from the host's contention when the host shows one, an error (a hung server) when nothing explains it."""
    from qwenops import untrusted
    from qwenops.vllmlog.classify import GENERIC_RANK, Evidence

    paths = ", ".join(answer.path for answer in late)
    title = f"the server did not answer {paths} within {untrusted.HTTP_TOTAL_DEADLINE_S:g} s"
    evidence = tuple(Evidence(f"GET {base_url}{answer.path}", answer.what) for answer in late)
    starved = [f.category for f in found if f.category in _STARVED_BY]
    if starved:
        return Finding("engine_stalled", "warning", f"{title} (follows from {starved[0]} above)", evidence,
                       f"a server starved of CPU or memory answers late, and so it does its clients: fix the "
                       f"{starved[0]} finding above, then read the server again", retryable=True, rank=GENERIC_RANK)
    host = ("on a host with CPU and memory to spare" if host_read else
            "(this host was not read: --host says whether it is starved of CPU or memory)")
    return Finding("engine_stalled", "error", title, evidence,
                   f"the server accepts connections but does not answer {host}: its API server or engine is hung or "
                   f"overloaded; read its log for the last lines (`qwenops troubleshoot --journal UNIT` or `--log "
                   f"FILE`) and its load (`qwenops status`); `qwenops serve` restarts a stalled engine",
                   retryable=True, rank=GENERIC_RANK)


def _probe(request: TroubleshootRequest, *, contended: bool, preempted: bool = False) -> list[Finding]:
    from qwenops.troubleshoot import probes

    server = request.server
    assert server is not None  # build_request refuses --probe without a server
    timeout = request.client_timeout_s or server.profile.client.timeout_s
    found, probed = probes.probe_interrupted(server, timeout)
    if found and found[0].severity == "error":
        return found  # the server cannot answer: the other probes would only repeat it
    found += probes.probe_latency(probed, contended)
    found += probes.probe_incoherent(server)
    if any(f.severity == "error" for f in found) or preempted:
        return found  # a server that already preempts: its counters gave the number, a ramp adds only load
    memory, _ramp = probes.probe_memory(server)
    return found + memory


# Findings about the server as a whole: the live read and a probe that meet the same refusal say one thing.
_ONCE = ("auth", "proxy_answered", "request_too_long")


def _merged(findings: Sequence[Finding]) -> list[Finding]:
    """One `auth` (or `proxy_answered`, `request_too_long`) finding with every piece of evidence, not one
    per request or per source; the first one's fix (a client's log, which has the exact numbers) stays."""
    out: list[Finding] = []
    first: dict[str, int] = {}
    for finding in findings:
        if finding.category not in _ONCE or finding.category not in first:
            if finding.category in _ONCE:
                first[finding.category] = len(out)
            out.append(finding)
            continue
        kept = out[first[finding.category]]
        evidence = kept.evidence + tuple(e for e in finding.evidence if e not in kept.evidence)
        out[first[finding.category]] = replace(kept, evidence=evidence)
    return out


def rank(findings: Sequence[Finding]) -> list[Finding]:
    """Errors before warnings before notes; within a severity, the most specific (root cause) first."""
    return sorted(findings, key=lambda f: (_ORDER[f.severity], f.rank))


def build_request(*, profile: str | None, logs: Sequence[str], journal: str | None, docker: str | None,
                  base_url: str | None, host: bool | None, probe: bool = False,
                  client_timeout_s: float | None = None) -> TroubleshootRequest:
    """What to read: the sources named; with none, the profile's live server and this host.

    The profile (named, or the default when a live server must be found) supplies the flags in force,
    so fixes read "from 32 to 16". The server goes with its key (config/target.py): QWENOPS_API_KEY is
    sent with every request when the URL is the configured server's, to no other.
    """
    from qwenops.troubleshoot.sources import file_source

    sources = [file_source(path) for path in logs]
    if journal:
        sources.append(LogSource("journal", journal, "--journal"))
    if docker:
        sources.append(LogSource("docker", docker, "--docker"))
    from qwenops.config.target import configured_server

    flags: Flags = {}
    name = profile
    server: ConfiguredServer | None = None
    if profile is not None or not (sources or base_url):
        configured = configured_server(profile, base_url)
        name, flags = configured.profile.name, profile_flags(configured.profile)
        if not sources or base_url:
            server = configured
    elif base_url is not None:
        server = configured_server(None, base_url)
    if probe and server is None:
        if sources:
            from qwenops.errors import BadInputError

            raise BadInputError("probes need a live server", field="--probe",
                                hint="add --base-url URL (or -p PROFILE to use the profile's server)")
        server = configured_server(profile, None)
        name, flags = server.profile.name, profile_flags(server.profile)
    return TroubleshootRequest(logs=tuple(sources), host=host if host is not None else server is not None,
                               profile=name, flags=flags, check_profile=name is not None, probe=probe,
                               client_timeout_s=client_timeout_s, server=server)


# The profile fields a fix may name ("lower max_num_seqs from 32 to 16").
FLAG_NAMES = ("max_num_seqs", "max_model_len", "max_num_batched_tokens", "gpu_memory_utilization",
              "enforce_eager", "kv_cache_dtype", "cpu_offload_gb")


def profile_flags(profile: Profile) -> Flags:
    """The profile's values in force for the server (FLAG_NAMES), for the fixes."""
    return profile.model_dump(include=set(FLAG_NAMES))
