"""Read vLLM's start-up log as it streams: which phase the server is in, and why it died.

Phases drive the live progress line ("loading weights · 23 s"); fatal lines become a `FatalCause`
with the failure vocabulary (docs/architecture.md), the quoted line and a concrete fix. Patterns are
anchored on vLLM's own message text (checked against vLLM 0.32 and the public failure logs in
tests/data/logs/public/), not on logger prefixes, which changed between V0 and V1 and differ
between the APIServer, EngineCore and Worker processes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum


class Phase(str, Enum):
    LAUNCHING = "launching"  # interpreter and vLLM importing, arguments parsed
    CONFIGURING = "configuring"  # model config resolved, engine process starting
    LOADING_WEIGHTS = "loading weights"
    PROFILING = "profiling memory"
    KV_CACHE = "allocating KV cache"
    WARMUP = "warming up"  # CUDA graph capture / compile warm-up
    API_STARTING = "starting API server"
    SERVING = "serving"


# First matching pattern sets the phase; phases only move forward (a late Worker line must not
# drag the progress line back from "warming up" to "loading weights").
_PHASE_PATTERNS: tuple[tuple[Phase, re.Pattern[str]], ...] = (
    (Phase.SERVING, re.compile(r"Application startup complete|Uvicorn running on")),
    (Phase.API_STARTING, re.compile(r"Starting vLLM (API )?server on|Available routes are")),
    (Phase.WARMUP, re.compile(r"Capturing (CUDA graphs|the model for CUDA graphs)|init engine \(profile|"
                              r"Compiling a graph|warming up", re.IGNORECASE)),
    (Phase.KV_CACHE, re.compile(r"KV cache size|Available KV cache memory|# (GPU|CPU) blocks|for KV cache")),
    (Phase.PROFILING, re.compile(r"Loading weights took|Model loading took|Memory profiling takes")),
    (Phase.LOADING_WEIGHTS, re.compile(r"Starting to load model|Loading (safetensors|pt) checkpoint shards|"
                                       r"Loading weights")),
    (Phase.CONFIGURING, re.compile(r"Resolved architecture|Initializing a V1 LLM engine|"
                                   r"Using max model len")),
)
_PHASE_ORDER = list(Phase)

# vLLM's own words for "the engine is gone" (v1/utils.py, v1/executor/multiproc_executor.py,
# v1/engine/exceptions.py). The API server lingers for seconds after them answering 503 or erroring
# streams; the supervisor restarts on the first such line instead of waiting for it to exit.
# Anchored at the start of the line, after vLLM's logger prefix (`ERROR 11-25 16:08:41 [file.py:12] `,
# `file.py:12]` before 0.6) and an exception name, because request-log lines quote user prompts
# (vLLM 0.8-0.10 log them by default) and a prompt must never be able to restart the server.
_ENGINE_DEATH = re.compile(
    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d \[?[\w./-]+:\d+\] )?"
    r"(?:[\w.]*(?:Error|Exception): )?(?:\[shutdown\] MPClient: )?"
    r"(?:Engine core process \S+ died unexpectedly|Worker proc \S+ died unexpectedly|"
    r"EngineCore encountered an issue|engine core exited unexpectedly|[\w.]*EngineDeadError\b)"
)
# vLLM's request logger (`Received request <id>: prompt: '...'`): user text, never evidence.
_REQUEST_LOG = re.compile(r"^(?:DEBUG|INFO|WARNING) .*?\] Received request ")
# uvicorn's access log (`INFO:     127.0.0.1:5312 - "GET /health HTTP/1.1" 200 OK`): a request was served.
_ACCESS_LOG = re.compile(r'^INFO:\s+\S+ - "')


@dataclass(frozen=True)
class FatalCause:
    """Why the server cannot start, in the words an operator acts on."""

    category: str  # the failure vocabulary of docs/architecture.md, plus invalid_argument / invalid_config
    title: str
    line: str  # the log line that proves it, stripped of vLLM's process prefix
    fix: str
    retryable: bool  # True when a restart can succeed without a config change

    def message(self) -> str:
        return f"{self.title}: {self.line!r}; fix: {self.fix}"


_PREFIX = re.compile(r"^\((?:APIServer|EngineCore\w*|Worker\w*|VllmWorker\S*|VllmWorkerProcess) pid=\d+\)\s*")


def strip_prefix(line: str) -> str:
    """Drop vLLM's `(EngineCore pid=123)` process tag so quoted lines read the same from any process."""
    return _PREFIX.sub("", line).strip()


@dataclass(frozen=True)
class _Rule:
    category: str
    title: str
    pattern: re.Pattern[str]
    fix: Callable[[re.Match[str]], str]
    retryable: bool = False


def _const(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


def _max_len_fix(match: re.Match[str]) -> str:
    estimate = match.group("estimate")
    if estimate:
        return (f"lower max_model_len to {estimate} (vLLM's own estimate for this memory), "
                f"or raise gpu_memory_utilization")
    return (f"lower max_model_len below {match.group('wanted')} (the KV cache holds less), "
            f"or raise gpu_memory_utilization")


def _free_memory_fix(match: re.Match[str]) -> str:
    free, total = float(match.group("free")), float(match.group("total"))
    # Round down to two decimals and keep 0.01 of headroom: the free figure moves between runs.
    target = math.floor(free / total * 100) / 100 - 0.01
    return (f"lower gpu_memory_utilization to {target:.2f} or below ({free:g} of {total:g} GiB free), "
            f"or stop the process holding GPU memory (nvidia-smi)")


# Ordered by how specific the evidence is: the first rule with a match anywhere in the log wins, so
# "No available memory for the cache blocks" beats the generic "Engine core initialization failed"
# that vLLM prints after it.
_RULES: tuple[_Rule, ...] = (
    _Rule("max_len_exceeds_kv", "max_model_len does not fit in the KV cache",
          re.compile(r"max seq len \((?P<wanted>\d+)\).*?larger than the available KV cache memory"
                     r"(?:.*?estimated maximum model length is (?P<estimate>\d+))?"),
          _max_len_fix),
    _Rule("kv_cache_no_blocks", "no memory left for the KV cache after loading the weights",
          re.compile(r"No available memory for the cache blocks"),
          _const("raise gpu_memory_utilization, lower max_num_seqs / max_num_batched_tokens, or use a "
                 "smaller (quantized) checkpoint; on the CPU engine raise VLLM_CPU_KVCACHE_SPACE")),
    _Rule("insufficient_free_memory", "less free GPU memory than gpu_memory_utilization asks for",
          re.compile(r"Free memory on device \S+ \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup "
                     r"is less than desired GPU memory utilization"),
          _free_memory_fix, retryable=True),
    _Rule("weights_oom", "the weights do not fit in GPU memory",
          re.compile(r"Failed to load model - not enough GPU memory"),
          _const("use a quantized checkpoint (profile 4090d: AWQ), raise tensor_parallel_size, or set "
                 "cpu_offload_gb")),
    _Rule("cudagraph_oom", "out of memory while capturing CUDA graphs",
          re.compile(r"capture_model\(|cuda_graph\.capture_end\(\)|CUDA out of memory.*graph"),
          _const("set enforce_eager: true (graphs take 1-3 GiB) or lower gpu_memory_utilization")),
    _Rule("cuda_driver_mismatch", "the NVIDIA driver is too old for this CUDA build",
          re.compile(r"Error 804: forward compatibility|NVIDIA driver on your system is too old|"
                     r"CUDA driver version is insufficient"),
          _const("upgrade the NVIDIA driver (CUDA 12.4 needs >= 550) or install a vLLM/torch built for "
                 "the driver's CUDA version")),
    _Rule("port_in_use", "the port is already taken",
          re.compile(r"\[Errno 98\].*address already in use|Address already in use"),
          _const("stop the process on that port (`ss -ltnp`) or pass another --port"), retryable=True),
    _Rule("model_not_found", "the model path or repository does not exist",
          re.compile(r"Invalid repository ID or local directory specified.*|"
                     r"does not appear to have a file named config\.json|Repository Not Found|"
                     # vLLM 0.32 hands a missing local directory to huggingface_hub as a repo id:
                     r"Repo id must be in the form 'repo_name' or 'namespace/repo_name'"),
          _const("check `model:` in the profile; for cpu-tiny run `qwenops model build-tiny`")),
    _Rule("invalid_argument", "vLLM rejected a command-line flag",
          re.compile(r"error: (unrecognized arguments|argument [^:]+: invalid .*)"),
          _const("remove or fix that flag in the profile's extra_args (see `vllm serve --help`)")),
    _Rule("invalid_config", "max_model_len is longer than the model supports",
          re.compile(r"User-specified max_model_len \((?P<wanted>\d+)\) is greater than the derived "
                     r"max_model_len \((?:max_position_embeddings=)?(?P<limit>\d+)"),
          lambda m: f"lower max_model_len to {m.group('limit')} (the model's max_position_embeddings)"),
    _Rule("invalid_config", "vLLM rejected the configuration",
          re.compile(r"(pydantic_core\._pydantic_core\.)?ValidationError: \d+ validation error.*|"
                     r"ValueError: User-specified max_model_len .*"),
          _const("fix the profile value the quoted line names")),
    _Rule("runtime_oom", "the GPU ran out of memory",
          re.compile(r"CUDA out of memory|torch\.OutOfMemoryError"),
          _const("lower max_num_seqs or max_model_len, or gpu_memory_utilization if other processes "
                 "share the GPU"), retryable=True),
    _Rule("engine_dead", "the engine process died",
          # A traceback through run_busy_loop is the engine dying in service (its cause is often cut off).
          re.compile(r"EngineDeadError|Engine core initialization failed|EngineCore encountered an issue|"
                     r"Engine core process \S+ died unexpectedly|Worker proc \S+ died unexpectedly|"
                     r"ERROR .*, in run_busy_loop$"),
          _const("read the traceback above this line in the server log"), retryable=True),
)


# vLLM picks the task from config.json's `architectures`; without a *ForCausalLM entry it may pick an
# embedding task and then serves /health and /v1/models but 404s every chat request.
_TASKS = re.compile(r"Supported tasks: \[(?P<tasks>[^\]]*)\]")
_NOT_GENERATIVE = _Rule(
    "model_not_generative", "vLLM loaded the model for a task other than text generation",
    _TASKS, _const("give the checkpoint a *ForCausalLM `architectures` entry in config.json (for cpu-tiny: "
                   "`qwenops model build-tiny --force DIR`); a chat server needs the 'generate' task"),
)


class BootLog:
    """Feed it the server's lines in order; it tracks the phase and the strongest fatal evidence."""

    def __init__(self) -> None:
        self.phase = Phase.LAUNCHING
        self._best: tuple[int, FatalCause] | None = None
        self._pending_validation: str | None = None
        self.engine_death: str | None = None  # the first line saying the engine process is gone
        self.unservable: FatalCause | None = None  # the server runs, but cannot serve chat
        # Set by the runner once the server answered its readiness probe, or by the first line
        # about a request; from then on only engine death is read from the log.
        self.serving = False

    def feed(self, raw_line: str) -> Phase | None:
        """Take one line; return the new phase when it moved forward, else None."""
        line = strip_prefix(raw_line)
        if not line:
            return None
        if _REQUEST_LOG.match(line) or _ACCESS_LOG.match(line):
            self.serving = True
            return None
        # Fatal evidence is start-up evidence. Once vLLM serves, the log carries request text that
        # anyone with API access controls; a quoted "Repository Not Found" or "Supported tasks:
        # ['embed']" must not stop a healthy server or make its next crash FATAL. Not the
        # "Application startup complete" line: uvicorn prints it before it binds the port.
        if not self.serving:
            self._match_fatal(line)
            tasks = _TASKS.search(line)
            if tasks and "'generate'" not in tasks.group("tasks"):
                # Not fatal to vLLM, fatal to a chat service: the runner gives up instead of calling it ready.
                self.unservable = FatalCause(_NOT_GENERATIVE.category, _NOT_GENERATIVE.title, _quote(line),
                                             _NOT_GENERATIVE.fix(tasks), retryable=False)
                self._best = (-1, self.unservable)
        if self.engine_death is None and _ENGINE_DEATH.match(line):
            self.engine_death = _quote(line)
        for phase, pattern in _PHASE_PATTERNS:
            if pattern.search(line):
                if _PHASE_ORDER.index(phase) > _PHASE_ORDER.index(self.phase):
                    self.phase = phase
                    return phase
                return None
        return None

    def _match_fatal(self, line: str) -> None:
        # pydantic's ValidationError names the field on the *next* line; quote both.
        if self._pending_validation is not None:
            line = f"{self._pending_validation} {line}"
            self._pending_validation = None
        elif "validation error for" in line:
            self._pending_validation = line
            return
        limit = len(_RULES) if self._best is None else max(self._best[0], 0)
        for rank, rule in enumerate(_RULES[:limit]):
            match = rule.pattern.search(line)
            if match:
                cause = FatalCause(rule.category, rule.title, _quote(line), rule.fix(match), rule.retryable)
                self._best = (rank, cause)
                return

    @property
    def cause(self) -> FatalCause | None:
        return self._best[1] if self._best else None


def _quote(line: str) -> str:
    return line if len(line) <= 300 else line[:297] + "..."


def classify(lines: Iterable[str]) -> FatalCause | None:
    """The fatal cause a whole log shows, or None for a log without one."""
    boot = BootLog()
    for line in lines:
        boot.feed(line)
    return boot.cause
