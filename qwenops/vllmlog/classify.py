"""The one classifier of vLLM logs: which start-up phase a server is in, and what went wrong, with the
line that proves it and the change that fixes it.

`qwenops serve` feeds it its server's output to name a FATAL cause; `qwenops troubleshoot` feeds it
any log. Patterns are anchored on vLLM's own message text, in the wordings of the V0 engine (0.4-0.7)
and the V1 engine (0.8 on), not on logger prefixes, which differ between versions and processes
(lines.py strips those). Where a message carries numbers (vLLM's own estimate of the longest context,
free against requested memory) the fix uses them.

A CUDA out-of-memory error means different things at different moments: while loading weights the
checkpoint is too big; while capturing CUDA graphs the graphs are; in service the batch is. So an
OOM line is classified by the traceback frames above it, else by the start-up phase reached.

User text never counts as evidence: vLLM's request logger quotes prompts, so those lines are skipped;
and in the supervisor's mode (`startup_only`) nothing after the server first serves counts at all:
the supervisor reads engine death itself, from lines anchored on vLLM's logger prefix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Literal, cast

from qwenops.vllmlog.lines import BytesPattern, LogLine, lines_of

Severity = Literal["error", "warning", "info"]
When = Literal["startup", "service", "any"]


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
    (Phase.WARMUP, re.compile(r"Capturing (CUDA graphs|cudagraphs|the model for CUDA graphs|CUDA graph shapes)|"
                              r"init engine \(profile|Compiling a graph|warming up", re.IGNORECASE)),
    (Phase.KV_CACHE, re.compile(r"KV cache size|Available KV cache memory|# (GPU|CPU|cuda) blocks|for KV cache|"
                                r"Maximum concurrency for")),
    (Phase.PROFILING, re.compile(r"Loading weights took|Model loading took|Memory profiling takes")),
    (Phase.LOADING_WEIGHTS, re.compile(r"Starting to load model|Loading (safetensors|pt) checkpoint shards|"
                                       r"Loading weights")),
    (Phase.CONFIGURING, re.compile(r"Resolved architecture|Initializing a V1 LLM engine|"
                                   r"Initializing an LLM engine|Using max model len")),
)
_PHASE_ORDER = list(Phase)
# A new boot in the same log (a restart under systemd or Docker): start-up evidence counts again.
_NEW_BOOT = re.compile(r"vLLM API server version|Initializing a V1 LLM engine|Initializing an LLM engine")

# vLLM's logger prefix: `ERROR 11-25 16:08:41 [file.py:12] ` (0.6 on), `ERROR 11-25 16:08:41 file.py:12] `
# (earlier), or uvicorn's `ERROR:    `; then possibly an exception's qualified name.
_LOGGER = r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[?[\w./-]+:\d+\] ?|" \
          r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+)?"
_EXCEPTION = r"(?:[\w.]*(?:Error|Exception|Exit)(?:\(\d+\))?: )?"
# vLLM's request logger (`Received request <id>: prompt: '...'`, `Added request`): user text, never evidence.
_REQUEST_LOG = re.compile(r"^(?:DEBUG|INFO|WARNING) .*?\] (?:Received request |Added request |"
                          r"Generated response |Request \S+ details)")
# uvicorn's access log (`INFO:     127.0.0.1:5312 - "GET /health HTTP/1.1" 200 OK`): a request was served.
_ACCESS_LOG = re.compile(r'^INFO:\s+\S+ - "')
_FRAME = re.compile(r'File "[^"]+", line \d+, in (?P<func>\w+)')
_TRACEBACK_START = re.compile(r"Traceback \(most recent call last\)")


@dataclass(frozen=True)
class Evidence:
    """One observation: where it was seen and what it said, quoted."""

    source: str  # "log line 12", "metric vllm:num_preemptions_total", "host", "probe"
    quote: str


@dataclass(frozen=True)
class Finding:
    """What is wrong, how sure the evidence makes it, and the change that fixes it."""

    category: str  # the failure vocabulary of docs/architecture.md
    severity: Severity
    title: str
    evidence: tuple[Evidence, ...]
    fix: str
    retryable: bool = False  # a restart can succeed without a config change
    rank: int = 0  # lower is more specific: the root cause comes first
    count: int = 1  # how many times the log showed it
    # A bounded, safe change of profile values that the evidence supports (`serve --auto-fit` applies it).
    change: dict[str, object] | None = None

    @property
    def line(self) -> str:
        """The first evidence quoted: the line that proves it."""
        return self.evidence[0].quote if self.evidence else ""


Flags = Mapping[str, object]  # the profile's values in force, when known: fixes say "from X to Y"
Fix = Callable[[re.Match[str], Flags], str]
Change = Callable[[re.Match[str]], "dict[str, object] | None"]
BLOCK_TOKENS = 16  # vLLM's KV block size: a max_model_len vLLM estimates is cut to whole blocks


@dataclass(frozen=True)
class Rule:
    category: str
    title: str
    pattern: re.Pattern[str]
    fix: Fix
    severity: Severity = "error"
    when: When = "startup"
    retryable: bool = False
    change: Change | None = None


def _const(text: str) -> Fix:
    return lambda _match, _flags: text


def _set(name: str, value: object, flags: Flags) -> str:
    """"lower NAME from NOW to VALUE" when the profile in force says NOW (and VALUE is lower)."""
    now = flags.get(name)
    lower = isinstance(now, (int, float)) and isinstance(value, (int, float)) and value < now
    change = f"from {now} to {value}" if lower else f"to {value}"
    return f"lower {name} {change} (`--set {name}={value}`)"


def _max_len_fix(match: re.Match[str], flags: Flags) -> str:
    groups = match.groupdict()
    estimate = groups.get("estimate") or groups.get("kv_tokens")
    if estimate:
        source = "vLLM's own estimate for this memory" if groups.get("estimate") else "the tokens the KV cache holds"
        return f"{_set('max_model_len', int(estimate), flags)}, {source}; or raise gpu_memory_utilization"
    return (f"lower max_model_len below {groups['wanted']} (the KV cache holds less), "
            f"or raise gpu_memory_utilization")


def _max_len_change(match: re.Match[str]) -> dict[str, object] | None:
    estimate = match.groupdict().get("estimate") or match.groupdict().get("kv_tokens")
    if not estimate or int(estimate) < BLOCK_TOKENS:
        return None
    return {"max_model_len": int(estimate) // BLOCK_TOKENS * BLOCK_TOKENS}


def _free_memory_target(match: re.Match[str]) -> float:
    free, total = float(match.group("free")), float(match.group("total"))
    # Round down to two decimals and keep 0.01 of headroom: the free figure moves between runs.
    return round(math.floor(free / total * 100) / 100 - 0.01, 2)


def _free_memory_fix(match: re.Match[str], _flags: Flags) -> str:
    free, total = float(match.group("free")), float(match.group("total"))
    target = _free_memory_target(match)
    return (f"lower gpu_memory_utilization to {target:.2f} or below (`--set gpu_memory_utilization={target:.2f}`; "
            f"{free:g} of {total:g} GiB free), or stop the process holding GPU memory (nvidia-smi)")


def _too_long_fix(match: re.Match[str], flags: Flags) -> str:
    groups = match.groupdict()
    limit = int(groups["limit"])
    prompt = groups.get("prompt")
    room = f"prompt {prompt} + max_tokens must be <= {limit}" if prompt else f"prompt + max_tokens <= {limit}"
    return (f"a client asked for more than max_model_len {limit} ({room}): lower the request's max_tokens or trim "
            f"the prompt; or raise max_model_len if the KV cache has room (`qwenops plan --max-model-len N`). "
            f"Not a server fault: vLLM refused that one request and kept serving")


def _preemption_fix(_match: re.Match[str], flags: Flags) -> str:
    return preemption_fix(flags)


def preemption_fix(flags: Flags) -> str:
    """Preemptions (from a log line or from /metrics) have one fix."""
    seqs = flags.get("max_num_seqs")
    lower = _set("max_num_seqs", max(1, int(str(seqs)) // 2), flags) if seqs else "lower max_num_seqs"
    return (f"the KV cache is too small for the batch: {lower}, shorten max_model_len, or raise "
            f"gpu_memory_utilization; preempted requests are recomputed, so latency jumps before anything fails")


_OOM_FIXES = {
    "weights_oom": "use a quantized checkpoint (profile 4090d: AWQ), raise tensor_parallel_size, or set cpu_offload_gb",
    "cudagraph_oom": "set enforce_eager: true (`--set enforce_eager=true`; graphs take 1-3 GiB) or lower "
                     "gpu_memory_utilization",
    "profile_oom": "lower max_num_batched_tokens and max_num_seqs (the memory profile runs one full batch), or "
                   "gpu_memory_utilization if other processes share the GPU",
    "runtime_oom": "lower max_num_seqs or max_model_len, or gpu_memory_utilization if other processes share the GPU",
}
_OOM_TITLES = {
    "weights_oom": "the weights do not fit in GPU memory",
    "cudagraph_oom": "out of memory while capturing CUDA graphs",
    "profile_oom": "out of memory while profiling a full batch at start-up",
    "runtime_oom": "the GPU ran out of memory",
}
# Traceback frames that say what was being allocated when CUDA ran out of memory: parts of function
# names, so that a frame vLLM renames between versions (capture_model, _capture_cudagraphs,
# gptq_marlin_repack, create_weights) still tells.
_OOM_FRAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cudagraph_oom", ("capture", "cudagraph", "cuda_graph")),
    ("weights_oom", ("weight", "repack", "load_model", "initialize_model", "get_model", "load_state_dict")),
    ("profile_oom", ("profile_run", "_dummy_", "determine_available_memory", "determine_num_available_blocks")),
)
_OOM = re.compile(r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError|OutOfMemoryError: CUDA|"
                  r"CUDA (?:driver )?error: out of memory|CUBLAS_STATUS_ALLOC_FAILED")
_OOM_RANK = 5  # between the specific start-up messages and the generic ones


# Ordered by how specific the evidence is: a lower index is the root cause, so "No available memory
# for the cache blocks" beats the generic "Engine core initialization failed" vLLM prints after it.
RULES: tuple[Rule, ...] = (
    Rule("max_len_exceeds_kv", "max_model_len does not fit in the KV cache",
         re.compile(r"max seq len \((?P<wanted>\d+)\).*?larger than the (?:available KV cache memory|maximum number of "
                    r"tokens that can be stored in KV cache \((?P<kv_tokens>\d+)\))"
                    r"(?:.*?estimated maximum model length is (?P<estimate>\d+))?"),
         _max_len_fix, change=_max_len_change),
    Rule("kv_cache_no_blocks", "no memory left for the KV cache after loading the weights",
         re.compile(r"No available memory for the cache blocks|No available (?:KV )?cache blocks|# GPU blocks: 0\b|"
                    r"insufficient (?:GPU )?memory for (?:the )?KV cache"),
         _const("raise gpu_memory_utilization, lower max_num_seqs / max_num_batched_tokens, or use a "
                "smaller (quantized) checkpoint; on the CPU engine raise VLLM_CPU_KVCACHE_SPACE")),
    Rule("insufficient_free_memory", "less free GPU memory than gpu_memory_utilization asks for",
         re.compile(r"Free memory on device(?: \S+)? \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup "
                    r"is less than desired GPU memory utilization"),
         _free_memory_fix, retryable=True,
         change=lambda m: {"gpu_memory_utilization": t} if (t := _free_memory_target(m)) > 0 else None),
    Rule("insufficient_free_memory", "GPU memory changed under vLLM while it profiled (another process uses the GPU)",
         re.compile(r"Error in memory profiling\. Initial free memory (?P<free>[\d.]+) GiB, current free memory"),
         _const("stop the other processes on the GPU (nvidia-smi) or lower gpu_memory_utilization"), retryable=True),
    Rule("weights_oom", _OOM_TITLES["weights_oom"],
         re.compile(r"Failed to load model - not enough GPU memory|"
                    r"Failed to (?:create|load|allocate) [\w ]*weights?\b.*(?:out of memory|OutOfMemory)"),
         _const(_OOM_FIXES["weights_oom"])),
    Rule("profile_oom", "out of memory while warming up the sampler with a full batch",
         re.compile(r"out of memory occurred when warming up (?:the )?sampler with (?P<seqs>\d+) dummy requests"),
         lambda m, flags: f"{_set('max_num_seqs', max(1, int(m.group('seqs')) // 2), flags)} (vLLM warmed the "
                          f"sampler with {m.group('seqs')} requests at once), or lower gpu_memory_utilization"),
    # An excerpt often keeps only the traceback through the capture (vLLM 0.5-0.6 workers), not the OOM line.
    Rule("cudagraph_oom", "the start-up died while capturing CUDA graphs",
         re.compile(r"capture_model\(|cuda_graph\.capture_end\(\)|CUDA out of memory.*graph"),
         _const(_OOM_FIXES["cudagraph_oom"]), change=lambda _m: {"enforce_eager": True}),
    Rule("cuda_driver_mismatch", "the NVIDIA driver is too old for this CUDA build",
         re.compile(r"Error 804: forward compatibility|NVIDIA driver on your system is too old|"
                    r"CUDA driver version is insufficient|no kernel image is available for execution|"
                    r"CUDA error: unsupported PTX|Found no NVIDIA driver on your system|"
                    r"is not compatible with the current PyTorch installation|"
                    r"install a PyTorch release that supports one of these CUDA versions|"
                    r"(?:undefined symbol|cannot open shared object file).*(?:libcuda|libcudart|libnvrtc)"),
         _const("upgrade the NVIDIA driver (CUDA 12.4 needs >= 550) or install a vLLM/torch built for the driver's "
                "CUDA version and this GPU's architecture (`qwenops doctor` compares them)")),
    Rule("port_in_use", "the port is already taken",
         re.compile(r"\[Errno 98\].*address already in use|Address already in use|\[Errno 48\]"),
         _const("stop the process on that port (`ss -ltnp`) or pass another --port"), retryable=True),
    Rule("model_not_found", "the model path or repository cannot be found or opened",
         re.compile(r"Invalid repository ID or local directory specified.*|"
                    r"does not appear to have a file named config\.json|Repository Not Found|"
                    r"is not a local folder and is not a valid model identifier|"
                    r"(?:Cannot access gated repo|gated repo|GatedRepoError)|"
                    r"(?:401|403|404) Client Error.*huggingface\.co|"
                    r"We couldn't connect to 'https://huggingface\.co'|LocalEntryNotFoundError|"
                    r"No such file or directory: '[^']*config\.json'|"
                    # vLLM 0.32 hands a missing local directory to huggingface_hub as a repo id:
                    r"Repo id must be in the form 'repo_name' or 'namespace/repo_name'"),
         _const("check `model:` in the profile (a local directory must exist; a repo id must be spelt right, and a "
                "gated one needs HF_TOKEN and accepted terms); for cpu-tiny run `qwenops model build-tiny`")),
    Rule("invalid_argument", "vLLM rejected a command-line flag",
         re.compile(r"error: (unrecognized arguments|argument [^:]+: invalid .*)"),
         _const("remove or fix that flag in the profile's extra_args (see `vllm serve --help`)")),
    Rule("invalid_config", "max_model_len is longer than the model supports",
         re.compile(r"User-specified max_model_len \((?P<wanted>\d+)\) is greater than the derived "
                    r"max_model_len \((?:max_position_embeddings=)?(?P<limit>\d+)"),
         lambda m, flags: f"{_set('max_model_len', int(m.group('limit')), flags)}, the model's "
                         f"max_position_embeddings"),
    Rule("invalid_config", "vLLM rejected the configuration",
         re.compile(r"(pydantic_core\._pydantic_core\.)?ValidationError: \d+ validation error.*|"
                    r"ValueError: User-specified max_model_len .*"),
         _const("fix the profile value the quoted line names")),
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"maximum context length is (?P<limit>\d+) tokens\. However, you requested \d+ tokens"
                    r"(?: \((?P<prompt>\d+) in the messages)?"),
         _too_long_fix, severity="warning", when="service"),
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"maximum context length is (?P<limit>\d+) tokens and your request has (?P<prompt>\d+) input"),
         _too_long_fix, severity="warning", when="service"),
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"prompt \(length (?P<prompt>\d+)\) is longer than the maximum model length of (?P<limit>\d+)"),
         _too_long_fix, severity="warning", when="service"),
    # V0 gives the answer what is left of the context: a prompt longer than max_model_len leaves less than 0.
    Rule("request_too_long", "a prompt alone was longer than max_model_len",
         re.compile(r"max_tokens must be at least 1, got -\d+"),
         _const("the prompt alone is longer than max_model_len: trim the prompt, or raise max_model_len if the KV "
                "cache has room (`qwenops plan --max-model-len N`); vLLM kept serving"),
         severity="warning", when="service"),
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"(?:Prompt|Input prompt) (?:length of |\()?(?P<prompt>\d+)(?: tokens\))? is (?:longer than the "
                    r"maximum model length of|too long and exceeds (?:the )?limit of) (?P<limit>\d+)"),
         _too_long_fix, severity="warning", when="service"),
    # vLLM rejects a request in preprocessing when its prompt fails validation, and length is what fails
    # there in practice; an excerpt often ends before the ValueError that gives the numbers.
    Rule("request_too_long", "a request was rejected while its prompt was checked (most often: too long)",
         re.compile(r"Error in preprocessing prompt inputs"),
         _const("find the ValueError below this line in the log: if it is \"maximum context length\", lower the "
                "request's max_tokens or trim the prompt, or raise max_model_len; vLLM kept serving"),
         severity="warning", when="service"),
    Rule("kv_cache_preemption", "requests were preempted: the KV cache is too small for the batch",
         re.compile(r"is preempted by PreemptionMode\.\w+ mode because there is not enough KV cache space"),
         _preemption_fix, severity="warning", when="service"),
    Rule("engine_stalled", "the engine stopped making progress",
         re.compile(r"No available shared memory broadcast block found in \d+ seconds?|"
                    r"(?:Watchdog caught collective operation timeout|NCCL (?:watchdog )?timeout)|"
                    r"RPC call to \w+ timed out|Engine (?:core )?(?:is )?hung|Engine iteration timed out"),
         _const("the engine is blocked (a stuck worker, NCCL, or an overloaded CPU): check `qwenops status` and "
                "the host's CPU; restart the server; `qwenops serve` restarts a stalled engine itself"),
         when="any", retryable=True),
    Rule("engine_dead", "the engine process died",
         # A traceback through run_busy_loop / run_engine_loop is the engine dying in service (cause often cut off).
         re.compile(r"EngineDeadError|AsyncEngineDeadError|MQEngineDeadError|Engine core initialization failed|"
                    r"EngineCore encountered an issue|EngineCore failed to start|Engine loop has died|"
                    r"Background loop has errored|Engine core process \S+ died unexpectedly|"
                    r"Engine core proc \S+ died unexpectedly|Worker proc \S+ died unexpectedly|"
                    r"Engine process failed to start|ERROR .*, in (?:run_busy_loop|run_engine_loop)$"),
         _const("read the traceback above this line in the server log; the first error there is the cause"),
         when="any", retryable=True),
)
# Which OOM category each phase implies, when the traceback frames do not say.
_PHASE_OOM = {Phase.LOADING_WEIGHTS: "weights_oom", Phase.PROFILING: "profile_oom", Phase.KV_CACHE: "profile_oom",
              Phase.WARMUP: "cudagraph_oom"}
# vLLM's periodic throughput line (V0 "Pending", V1 "Waiting"), in the two states that are evidence:
# no tokens while requests run (a stalled engine), and a full KV cache with requests waiting.
_NO_PROGRESS = re.compile(r"Avg generation throughput: 0\.0 tokens/s, Running: (?P<running>[1-9]\d*) reqs")
_KV_FULL = re.compile(r"(?:Waiting|Pending): (?P<waiting>[1-9]\d*) reqs, GPU KV cache usage: "
                      r"(?P<usage>9[5-9]\.\d+|100\.0)%")
NO_PROGRESS_LINES = 3  # throughput lines (10 s apart) with no token while requests run
# A logger ERROR line while CUDA graphs are captured, when the excerpt lost the exception itself.
_ERROR_LINE = re.compile(r"^(?:ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[?[\w./-]+:\d+\] ?\S")
_MODEL_NOT_GENERATIVE = Rule(
    "model_not_generative", "vLLM loaded the model for a task other than text generation",
    re.compile(r"Supported tasks: \[(?P<tasks>[^\]]*)\]"),
    _const("give the checkpoint a *ForCausalLM `architectures` entry in config.json (for cpu-tiny: "
           "`qwenops model build-tiny --force DIR`); a chat server needs the 'generate' task"),
)
GENERIC_RANK = len(RULES) - 1  # engine_dead: always a consequence when anything else is known


def _candidate_pattern() -> BytesPattern:
    """One expression that matches every line the classifier could act on (a superset: feed decides),
    except request and access-log lines, which only say "serving" (see SERVED).

    Anchors at a line's start are dropped (the wrappers lines.py strips may stand before it); names of
    groups are dropped (alternatives may share them); a case-blind pattern stays case-blind inside.
    Compiled with RE2 where google-re2 is installed (a dependency; Python's `re` otherwise, slower)."""
    patterns = [rule.pattern for rule in RULES] + [pattern for _, pattern in _PHASE_PATTERNS]
    patterns += [_OOM, _NEW_BOOT, _FRAME, _TRACEBACK_START, _MODEL_NOT_GENERATIVE.pattern, _NO_PROGRESS, _KV_FULL,
                 _ERROR_LINE, re.compile(r"validation error for")]
    parts = []
    for pattern in patterns:
        source = re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern).removeprefix("^")
        parts.append(f"(?i:{source})" if pattern.flags & re.IGNORECASE else f"(?:{source})")
    joined = "(?m)" + "|".join(parts)
    try:
        import re2
    except ImportError:
        return re.compile(joined.encode())
    return cast("BytesPattern", re2.compile(joined.encode()))


CANDIDATE = _candidate_pattern()
# Request-log and access-log lines: evidence of serving, never of anything else.
SERVED = re.compile(rb' HTTP/1\.[01]" \d{3}|\] (?:Received|Added) request ')


def quote(line: str) -> str:
    return line if len(line) <= 300 else line[:297] + "..."


def _evidence(line: LogLine, text: str) -> tuple[Evidence, ...]:
    return (Evidence(f"log line {line.number}", quote(text)),)


@dataclass
class LogClassifier:
    """Feed it a log's lines in order; it tracks the phase and collects findings, most specific first.

    `startup_only` is the supervisor's mode: once the server serves, only engine death and stalls count.
    """

    flags: Flags = field(default_factory=dict)
    startup_only: bool = False
    phase: Phase = Phase.LAUNCHING
    serving: bool = False
    _frames: list[str] = field(default_factory=list)
    _pending_validation: tuple[LogLine, str] | None = None
    _no_progress: tuple[LogLine, str] | None = None  # the first throughput line with no progress
    _no_progress_lines: int = 0
    _found: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def feed(self, line: LogLine) -> Phase | None:
        """Take one normalised line; return the new phase when it moved forward, else None."""
        if line.served_before:
            self.serving = True
        text = line.text.strip()
        if not text:
            return None
        if _REQUEST_LOG.match(text) or _ACCESS_LOG.match(text):
            self.serving = True
            return None
        if self.serving and _NEW_BOOT.search(text):
            self.serving, self.phase = False, Phase.LAUNCHING
        self._track_traceback(text)
        self._match(line, text)
        for phase, pattern in _PHASE_PATTERNS:
            if pattern.search(text):
                if _PHASE_ORDER.index(phase) > _PHASE_ORDER.index(self.phase):
                    self.phase = phase
                    return phase
                return None
        return None

    def _track_traceback(self, text: str) -> None:
        if _TRACEBACK_START.search(text):
            self._frames = []
            return
        frame = _FRAME.search(text)
        if frame:
            self._frames.append(frame.group("func"))
            del self._frames[:-64]  # a deep traceback keeps its innermost frames

    def _match(self, line: LogLine, text: str) -> None:
        # pydantic's ValidationError names the field on the *next* line; quote both.
        if self._pending_validation is not None:
            first, first_text = self._pending_validation
            self._pending_validation = None
            text, line = f"{first_text} {text}", first
        elif "validation error for" in text:
            self._pending_validation = (line, text)
            return
        startup_evidence = not self.serving
        if self.startup_only and not startup_evidence:
            return
        for rank, rule in enumerate(RULES):
            if rule.when == "startup" and not startup_evidence:
                continue
            match = rule.pattern.search(text)
            if match:
                self._add(Finding(rule.category, rule.severity, rule.title, _evidence(line, text),
                                  rule.fix(match, self.flags), rule.retryable, rank,
                                  change=rule.change(match) if rule.change else None))
                return
        if _OOM.search(text):
            category = self._oom_category()
            self._add(Finding(category, "error", _OOM_TITLES[category], _evidence(line, text), _OOM_FIXES[category],
                              retryable=category == "runtime_oom", rank=_OOM_RANK,
                              change={"enforce_eager": True} if category == "cudagraph_oom" else None))
            return
        if self._throughput(line, text):
            return
        if startup_evidence and self.phase is Phase.WARMUP and _ERROR_LINE.match(text):
            # A fallback for excerpts that lost the exception: as generic as "the engine died".
            self._add(Finding("cudagraph_oom", "error", "the start-up failed while capturing CUDA graphs",
                              _evidence(line, text), _OOM_FIXES["cudagraph_oom"], rank=GENERIC_RANK))
            return
        tasks = _MODEL_NOT_GENERATIVE.pattern.search(text)
        if tasks and startup_evidence and "'generate'" not in tasks.group("tasks"):
            rule = _MODEL_NOT_GENERATIVE
            self._add(Finding(rule.category, "error", rule.title, _evidence(line, text), rule.fix(tasks, self.flags),
                              rank=-1))

    def _throughput(self, line: LogLine, text: str) -> bool:
        stalled = _NO_PROGRESS.search(text)
        if stalled:
            self._no_progress = self._no_progress or (line, text)
            self._no_progress_lines += 1
            if self._no_progress_lines == NO_PROGRESS_LINES:
                first, first_text = self._no_progress
                self._add(Finding(
                    "engine_stalled", "warning", "the engine reported no tokens while requests were running",
                    _evidence(first, f"{first_text} (and later lines like it)"),
                    "a hung step (a stuck worker, NCCL) or one huge prefill: see `qwenops status`, look for a "
                    "request with a very long prompt, and restart if it lasts; `qwenops serve` restarts a stalled "
                    "engine", rank=len(RULES)))
            return True
        full = _KV_FULL.search(text)
        if full:
            self._add(Finding(
                "kv_cache_full", "warning", "the KV cache is full and requests are waiting for it",
                _evidence(line, text), _preemption_fix(full, self.flags), rank=len(RULES)))
            return True
        return False

    def _oom_category(self) -> str:
        for category, parts in _OOM_FRAMES:
            if any(part in frame for frame in self._frames for part in parts):
                return category
        if self.serving:
            return "runtime_oom"
        return _PHASE_OOM.get(self.phase, "runtime_oom")

    def _add(self, finding: Finding) -> None:
        """Keep the first sighting of each finding (its line is the earliest evidence); count the rest."""
        key = (finding.category, finding.title)
        seen = self._found.get(key)
        self._found[key] = finding if seen is None else replace(seen, count=seen.count + 1)

    def findings(self) -> list[Finding]:
        """Errors first, the root cause (most specific) first among them; then warnings, then notes.

        The generic "the engine died" is a consequence whenever something more specific was found, and
        is then reported as a note under it, not as a second error.
        """
        found = list(self._found.values())
        if any(f.severity == "error" and f.rank < GENERIC_RANK for f in found):
            found = [replace(f, severity="info", title=f"{f.title} (follows from the error above)")
                     if f.rank >= GENERIC_RANK and f.severity == "error" else f for f in found]
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(found, key=lambda f: (order[f.severity], f.rank))

    def root_cause(self) -> Finding | None:
        errors = [f for f in self.findings() if f.severity == "error"]
        return errors[0] if errors else None


def classify_lines(lines: Iterable[LogLine], flags: Flags | None = None) -> list[Finding]:
    classifier = LogClassifier(flags=dict(flags or {}))
    for line in lines:
        classifier.feed(line)
    return classifier.findings()


def classify_text(text: Iterable[str], flags: Flags | None = None) -> list[Finding]:
    """Findings of already-decoded lines (tests, the supervisor's captured output)."""
    return classify_lines(lines_of(text), flags)
