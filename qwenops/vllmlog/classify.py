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
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Literal, cast

from qwenops.vllmlog.lines import RE2_MAX_MEM, BytesPattern, LogLine, compile_scanner, lines_of

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
                              r"init engine \(profile|Compiling a graph|warming up|CUDA graphs can take additional|"
                              r"Graph capturing finished", re.IGNORECASE)),
    (Phase.KV_CACHE, re.compile(r"KV cache size|Available KV cache memory|# (GPU|CPU|cuda) blocks|for KV cache|"
                                r"Maximum concurrency for")),
    (Phase.PROFILING, re.compile(r"Loading (?:model )?weights took|Model loading took|Memory profiling takes|"
                                 r"Starting profile run|The sequence length used for profiling")),
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
_ACCESS_LOG = re.compile(r'^INFO:\s{1,16}\S{1,64} - "')
# A traceback frame, as Python prints it (also with curly or HTML-escaped quotes, as pastes mangle them).
_FRAME = re.compile('File (?:"|\u201c|&quot;)(?P<file>[^"\u201d&]+)(?:"|\u201d|&quot;), '
                    r"line \d+, in (?P<func>[\w<>.]+)")
# IPython and Jupyter print a frame as `File ~/venv/lib/.../openai.py:119, in completion_with_retry(llm, ...)`.
# IPython's and Jupyter's frames: `File path.py:49, in func`, the path as a link in a notebook's copy
# (`File [path.py:49](http://host/lab/tree/path.py#line=48), in CacheEngine._allocate_kv_cache(self, ...)`).
_IPYTHON_FRAME = re.compile(r"^File \[?(?P<file>[^\s,\[\]]+\.py):\d+\]?(?:\(\S*?\))?, in (?P<func>[\w<>.]+)")
_TRACEBACK_START = re.compile(r"Traceback \(most recent call last\)")
_CHAIN_HEADER = re.compile(r"The above exception was the direct cause of the following exception|"
                           r"During handling of the above exception, another exception occurred")
# The code line under a frame that hands a phase to the workers by name: V0 `_run_workers("load_model")`,
# V1 `collective_rpc("determine_available_memory")`; an excerpt cut below it still says what was running.
_RPC = re.compile(r'(?:collective_rpc|_run_workers|run_method)\(\s*"(?P<method>\w+)"')
# What a log line says once the logger's own prefix is gone (also the odd `[file.py:12[]` of one paste).
_LOGGER_PREFIX = re.compile(r"^(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? "
                            r"\[?[\w./ -]+:\d+[\]\[]+ ?|(?:ERROR|CRITICAL):\s+)")
# An exception line: a qualified type name, then its message. Types that end a healthy run (Ctrl-C, a
# cancelled task at shutdown) are not failures.
_EXCEPTION_LINE = re.compile(r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Timeout|Fault))"
                             r"(?:\(\d+\))?(?::\s*(?P<msg>.*))?$")
# A traceback wholly inside Python's resource tracker, the helper process that only remembers shared-memory names to
# remove at exit: its KeyError for a name already removed (vLLM's shared-memory broadcast, 0.5 on) harms nothing.
_BENIGN_FRAMES = re.compile(r"[/\\]multiprocessing[/\\]resource_tracker\.py$")
_BENIGN_EXCEPTIONS = re.compile(r"(?:^|\.)(?:KeyboardInterrupt|SystemExit|CancelledError|GeneratorExit|"
                                r"StopIteration|StopAsyncIteration|ClientDisconnect)$")


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


def _parallel_fix(match: re.Match[str]) -> str:
    heads, tp = match.groupdict().get("heads"), match.groupdict().get("tp")
    if heads and tp:
        sizes = [str(n) for n in range(1, min(int(heads), 16) + 1) if int(heads) % n == 0]
        return (f"tensor_parallel_size {tp} does not divide the model's {heads} attention heads: use one that does "
                f"({', '.join(sizes)}), and pipeline_parallel_size for the rest of the GPUs")
    return ("use a tensor_parallel_size that divides the model's attention heads (and an expert-parallel size that "
            "divides its experts), and pipeline_parallel_size for the rest of the GPUs")


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


# The prompt's size in the several wordings of vLLM's (and OpenAI's) 400 for a context too long.
_PROMPT_TOKENS = re.compile(r"\((?P<a>\d+) in the messages|(?:has|contains)(?: at least)? (?P<b>\d+) input tokens")


def _too_long_fix(match: re.Match[str], flags: Flags) -> str:
    groups = match.groupdict()
    limit = int(groups["limit"])
    prompt = groups.get("prompt")
    if prompt is None:
        found = _PROMPT_TOKENS.search(match.string, match.end())
        prompt = (found.group("a") or found.group("b")) if found else None
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
    "insufficient_free_memory": "memory vLLM measured as free was taken before it allocated the KV cache (or while "
                                "it slept, in sleep mode): stop the other processes on the GPU (a trainer, another "
                                "server: nvidia-smi), free the trainer's memory before wake_up, or lower "
                                "gpu_memory_utilization to leave them their share",
}
_OOM_TITLES = {
    "weights_oom": "the weights do not fit in GPU memory",
    "cudagraph_oom": "out of memory while capturing CUDA graphs",
    "profile_oom": "out of memory while profiling a full batch at start-up",
    "runtime_oom": "the GPU ran out of memory",
    "insufficient_free_memory": "out of memory allocating the KV cache (or waking from sleep mode): memory free at "
                                "the profile was taken since",
}
# What a traceback was doing, from its frames: vLLM renames functions between versions, so each phase is
# a set of names (and file paths) across V0 and V1, and the strongest phase in a stack wins (capturing
# CUDA graphs runs `_dummy_run`, which is also the profiling run's).
FramePhase = Literal["capture", "weights", "kv_check", "profile", "bind", "model_files", "config", "input", "dtype",
                     "device",
                     "media", "preprocess", "wait", "serving", "sampler", "forward", "client_connect", "client_read",
                     "engine_client", "args", "kv_alloc", "kv_setup", "kv_connector"]
_FRAME_PHASES: tuple[tuple[FramePhase, re.Pattern[str], re.Pattern[str] | None], ...] = (
    # (phase, function name, file path)
    ("capture", re.compile(r"capture|cudagraph|cuda_graph"), re.compile(r"cuda_graph|cudagraph|/cuda/graphs\.py")),
    ("weights", re.compile(r"^_?load_weights?$|^_?load_model$|weight_loader|create_weights|^_?initialize_model$|"
                           r"^get_model$|load_state_dict|repack|process_weights_after_loading|load_checkpoint|"
                           r"^download_weights|^_?load_\w*weights"),
     re.compile(r"model_loader|weight_utils")),
    ("kv_check", re.compile(r"check_enough_kv_cache_memory|raise_if_cache_size_invalid|^get_kv_cache_configs?$"), None),
    ("profile", re.compile(r"^profile_run$|_dummy_\w*run|determine_available_memory|"
                           r"determine_num_available_blocks|^profile$"), None),
    ("bind", re.compile(r"^bind$|^bind_socket$|^create_server$|^_?create_server_socket$|^make_zmq_socket$|^listen$"),
     None),
    ("model_files", re.compile(r"^get_config$|^from_pretrained$|hf_hub_download|^cached_files?$|snapshot_download|"
                               r"get_class_from_dynamic_module|get_cached_module_file|^file_exists$|list_repo_files|"
                               r"get_hf_file_to_dict|_get_model_path"),
     re.compile(r"/huggingface_hub/")),
    # Building and checking the engine's configuration (vLLM's config dataclasses are pydantic's).
    ("config", re.compile(r"^create_engine_config$|^create_model_config$|^_?verify_\w+|^_get_and_verify_\w+|"
                          r"^(?:Model|Vllm|Cache|Parallel|Scheduler|Device|Load|Compilation|Speculative)Config$"),
     re.compile(r"/vllm/config(?:\.py$|/)|/pydantic/_internal/_dataclasses\.py$")),
    # Checking one request's prompt against max_model_len (V0 and V1 processors, the OpenAI server).
    ("input", re.compile(r"^_validate_model_inputs?$|^_validate_input$|^_validate_prompt\w*$|^_validate_model_input$"),
     None),
    # The worker's check that the GPU runs the model's dtype (V0 0.2-0.6, under init_model or init_device): it
    # raises for one reason only, a dtype (bfloat16) the GPU's compute capability lacks.
    ("dtype", re.compile(r"^_?check_if_\w*supports_dtype$"), None),
    ("device", re.compile(r"^init_device$"), None),
    ("media", re.compile(r"fetch_(?:image|video|audio)|load_from_url|fetch_\w*media|_load_\w*_url"),
     re.compile(r"/multimodal/(?:utils|media|image|video|audio)")),
    # The OpenAI server turning one request's messages into the prompt it checks against max_model_len (tokenising,
    # rendering): weaker than media (a download runs under it too), and still one request's failure.
    ("preprocess", re.compile(r"^_preprocess_(?:chat|completion)$|^_tokenize_prompt_inputs?(?:_async)?$|"
                              r"^_tokenize_prompt_input_or_inputs(?:_async)?$|^_normalize_prompt_text_to_input$|"
                              r"^_create_tokens_prompt$|^render_prompt(?:_and_embeds)?$"), None),
    # The engine waiting on its workers' answers (V1's shared-memory message queue): a timeout there is a
    # worker that stopped answering.
    ("wait", re.compile(r"^dequeue$|^acquire_read$|^get_response$|^wait_for_response$"),
     re.compile(r"/shm_broadcast\.py$")),
    # A client library opening its connection (aiohttp's connector and aiohappyeyeballs, httpcore's connect_tcp,
    # urllib3's _new_conn, the socket's create_connection): what fails there never reached a server, so it is no
    # read of an answer (no timeout of one) even though the same libraries' files are the reading phase's.
    ("client_connect", re.compile(r"^_?wrap_create_connection$|^_?create_direct_connection$|^start_connection$|"
                                  r"^_connect_sock$|^connect_tcp$|^_new_conn$|^create_connection$"), None),
    # A client library reading an answer (httpx, httpcore, h11, aiohttp, requests, urllib3, openai), on any OS.
    ("client_read", re.compile(r"^_?receive_(?:response_body|event)$|^iter_(?:bytes|raw|lines)$|^read_chunk"),
     re.compile(r"[/\\](?:httpcore|httpx|h11|aiohttp|requests|urllib3)[/\\]")),
    # The model's own forward pass (a `forward` in vLLM's model or layer code: see frame_phase), under whatever
    # ran it: a batch's activations. Deeper than the engine's step, so it names the step's failure.
    ("forward", re.compile(r"(?!)"), None),
    ("serving", re.compile(r"^execute_model$|^run_busy_loop$|^_process_engine_step$|^step_with_batch_queue$|"
                           r"^engine_step$|^run_engine_loop$|^step_async$|^execute_model_async$|"
                           # multi-step scheduling (V0 0.6) moving a batch's inputs on between steps
                           r"^advance_step\w*$"), None),
    # The sampler (V0's layer, V1's module): at start-up it runs only in the dummy runs (the profiling run's, the
    # warm-up after the KV cache), so a failure there without a request served is theirs.
    ("sampler", re.compile(r"(?!)"),
     re.compile(r"[/\\]v1[/\\]sample[/\\]|[/\\]model_executor[/\\]layers[/\\]sampler\.py$")),
    # The API server reading the engine core's outputs: what fails there is the engine, already dead.
    ("engine_client", re.compile(r"^get_output_async$|^output_handler$|^_format_exception$|dead_error|"
                                 r"^(?:chat_)?completion_stream_generator$|"
                                 r"^(?:Async|MQ)?EngineDeadError$"), None),
    # Parsing the command line (argparse, vLLM's FlexibleArgumentParser): what it raises is the command line's
    # fault (a flag vLLM moved or refused, a config file it could not read). Weak: any deeper phase names it.
    # (a wrapper's own: ms-swift's `_parse_args`, transformers' HfArgumentParser `parse_args_into_dataclasses`)
    ("args", re.compile(r"^_?parse_(?:known_)?args(?:_into_dataclasses)?$|^_parse_known_args2?$|"
                        r"^parse_known_intermixed_args$"), None),
    # Allocating the KV cache once the memory profile sized it (V0's initialize_cache and cache engine, V1's
    # initialize_kv_cache): the profile is over, so an out-of-memory error here is memory that was free when
    # vLLM measured it and was taken since (a trainer or another server on the same GPU). Waking from sleep mode
    # (`wake_up`, the cumem allocator mapping its memory back) is the same: what the trainer holds is not free.
    ("kv_alloc", re.compile(r"^initialize_cache$|^_init_cache_engine$|^_allocate_kv_cache\w*$|"
                            r"^initialize_kv_cache(?:_tensors)?$|^_allocate_gpu_cache$|^allocate_gpu_cache$|"
                            r"^wake_up$"), re.compile(r"[/\\]device_allocator[/\\]cumem\.py$")),
    # The engine setting up its KV cache (V0's LLMEngine and V1's EngineCore): it profiles memory, sizes the cache
    # and (V1) warms up and captures graphs under it. The weakest name: a deeper frame says which step it was; an
    # excerpt cut right below it leaves the start-up phase reached and vLLM's KV figures to say (see _kv_setup).
    ("kv_setup", re.compile(r"^_?initialize_kv_caches?$|^_init_cache$"), None),
    # Building the KV connector that --kv-transfer-config names (LMCache, NIXL, P2P, a disaggregated prefill): what
    # its constructor raises is that configuration's fault (a buffer size the allocator refuses, a role or address
    # it cannot use). Weakest of all: a deeper frame (an allocation's OOM) names the step.
    ("kv_connector", re.compile(r"^create_connector(?:_v[01])?$"),
     re.compile(r"[/\\]kv_transfer[/\\]kv_connector[/\\]")),
)
_ENGINE_CLIENT = next(name for phase, name, _ in _FRAME_PHASES if phase == "engine_client")
# Model code constructing its layers allocates the weights (vLLM 0.1-0.2 had no loader frame above it).
_MODEL_CODE = re.compile(r"/model_executor/models/")
_LOGPROBS = re.compile(r"^(?:get|gather|compute)_(?:topk_)?logprobs$|^_get_prompt_logprob\w*$")
_CONSTRUCT = re.compile(r"^(?:__init__|<listcomp>|<genexpr>|make_layers)$")
_MODEL_LAYERS = re.compile(r"/model_executor/(?:models|layers)/")
_FORWARD = re.compile(r"^(?:_?forward|forward_native|forward_cuda|forward_oot)$")
# The RPC a worker runs, named in the code line under a frame, in the same vocabulary.
_RPC_PHASES: dict[str, FramePhase] = {
    "load_model": "weights", "capture_model": "capture", "compile_or_warm_up_model": "capture",
    "determine_available_memory": "profile", "determine_num_available_blocks": "profile", "profile": "profile",
    "initialize_cache": "kv_check", "execute_model": "serving",
}
_PHASE_WORDS: dict[FramePhase, str] = {
    "capture": "while capturing CUDA graphs", "weights": "while loading the weights",
    "kv_check": "while checking the KV cache against max_model_len", "profile": "during the memory-profiling run",
    "bind": "while binding a port", "model_files": "while resolving the model's files",
    "config": "while vLLM checked its configuration", "input": "while vLLM checked a request's prompt",
    "dtype": "while vLLM checked that the GPU runs the model's dtype",
    "device": "while initialising the GPU",
    "media": "while fetching a request's image or media", "serving": "in the model's forward pass while serving",
    "preprocess": "while vLLM prepared a request's prompt", "sampler": "in the sampler",
    "client_connect": "while the client opened its connection to the server",
    "client_read": "while the client read the server's answer",
    "wait": "while the engine waited for its workers",
    "forward": "in the model's forward pass",
    "engine_client": "while the API server read the engine's outputs",
    "kv_setup": "while the engine set up its KV cache (profiling memory, then sizing the cache)",
    "kv_connector": "while vLLM built its KV connector (LMCache, NIXL, a disaggregated prefill's transfer)",
    "kv_alloc": "while allocating the KV cache (after the memory profile, or waking from sleep mode)",
    "args": "while the program parsed its command line",
}


# A frame's code line, read as frames are: the call it makes (`x = await self.load_model(` names load_model,
# the next frame an excerpt may have lost), or the exception it raises (`raise ValueError(`).
CODE, RAISE = "<code>", "<raise>"
# A traceback the HTTP server printed for a request it failed (uvicorn's "Exception in ASGI application"): a client
# library's frames in it are the server's own outbound request, not a client reading the server.
SERVER = "<server>"
_CODE_CALL = re.compile(r"\b(?P<call>[A-Za-z_]\w*)\s*\(")
_CODE_RAISE = re.compile(r"^raise\s+(?:[A-Za-z_]\w*\.)*(?P<raised>[A-Za-z_]\w{3,})\b")
_CODE_CHARS = 300


def code_frames(code: str) -> list[tuple[str, str]]:
    """The pseudo-frames a frame's code line gives: (CODE, the first name it calls), (RAISE, what it raises)."""
    body = _LOGGER_PREFIX.sub("", code, count=1).strip()[:_CODE_CHARS]
    if not body or _FRAME.search(body) or _EXCEPTION_LINE.match(body):
        return []
    raised = _CODE_RAISE.match(body)
    if raised:
        return [(RAISE, raised.group("raised"))]
    call = _CODE_CALL.search(body)
    return [(CODE, call.group("call"))] if call else []


def _benign_frames(frames: list[tuple[str, str]]) -> bool:
    """Whether a traceback's frames are all in files whose exceptions harm nothing (`_BENIGN_FRAMES`)."""
    files = [file for file, _ in frames if file not in ("", CODE, RAISE, SERVER)]
    return bool(files) and all(_BENIGN_FRAMES.search(file) for file in files)


def frame_phase(frames: Iterable[tuple[str, str]]) -> FramePhase | None:
    """The strongest phase the frames (file, function) of one traceback show, or None. A code line's call
    counts by its name alone; what a code line raises, not at all (see _cut_finding)."""
    found: set[FramePhase] = set()
    for file, func in frames:
        if not file:  # an RPC named in a code line
            if func in _RPC_PHASES:
                found.add(_RPC_PHASES[func])
            continue
        if file == RAISE:  # only the engine's dead error names a phase by what is raised
            if _ENGINE_CLIENT.search(func):
                found.add("engine_client")
            continue
        if file == CODE:
            found.update(phase for phase, name, _ in _FRAME_PHASES if name.search(func))
            continue
        for phase, name, path in _FRAME_PHASES:
            # A file's `<module>` frame is Python importing it, not vLLM running that phase's code.
            if name.search(func) or (path is not None and func != "<module>" and path.search(file)):
                found.add(phase)
        if _MODEL_CODE.search(file) and _CONSTRUCT.match(func):
            found.add("weights")
        if _MODEL_LAYERS.search(file) and _FORWARD.match(func):
            found.add("forward")
    return next((phase for phase, _, _ in _FRAME_PHASES if phase in found), None)


_CONNECT_FIX = ("the request never reached a server: check the client's base URL (scheme, host, port and /v1, e.g. "
                "http://HOST:8000/v1 — a URL without `://` is not one; from inside a container, localhost is the "
                "container itself), that the server is up and listening on that address (`curl BASE_URL/models`), and "
                "any proxy or firewall between them")
_FRAME_OOM: dict[FramePhase, str] = {"capture": "cudagraph_oom", "weights": "weights_oom", "profile": "profile_oom",
                                     "kv_check": "profile_oom", "serving": "runtime_oom",
                                     "kv_alloc": "insufficient_free_memory"}
# Any accelerator's words (CUDA, ROCm's HIP, Ascend's NPU, Intel's XPU, Gaudi's HPU): vLLM's phases are the same.
_OOM = re.compile(r"(?:CUDA|HIP|NPU|XPU|HPU|MPS) out of memory|torch\.(?:cuda\.|npu\.|xpu\.)?OutOfMemoryError|"
                  r"OutOfMemoryError: (?:CUDA|HIP|NPU|XPU)|(?:CUDA|HIP) (?:driver )?[Ee]rror: out of memory|"
                  r"CUBLAS_STATUS_ALLOC_FAILED|hipErrorOutOfMemory|"
                  # the same in the words of CUDA's driver and runtime APIs, NCCL's warning, cuDNN and cuSPARSE, and
                  # Ascend's runtime (ACL)
                  r"CUDA_ERROR_OUT_OF_MEMORY|cudaErrorMemoryAllocation|Cuda failure (?:2 )?'out of memory'|"
                  r"CU(?:DNN|SPARSE)_STATUS_ALLOC_FAILED|ACL_ERROR_RT_MEMORY_ALLOCATION|"
                  # Triton's launcher, Apple's MPS, Intel's Level Zero / Unified Runtime, XLA (TPU), a bare
                  # "RuntimeError: out of memory" (old torch)
                  r"Triton Error \[(?:CUDA|HIP)\]: out of memory|MPS backend out of memory|"
                  r"(?:UR|ZE)_RESULT_ERROR_OUT_OF_(?:DEVICE|HOST)_MEMORY|RESOURCE_EXHAUSTED: (?:Out of memory|"
                  r"Error allocating device buffer)|RuntimeError: out of memory|"
                  # host memory: torch's CPU allocator, C++'s and Python's own (the CPU backend's KV cache and
                  # activations, or the weights a loader holds in RAM)
                  r"DefaultCPUAllocator: (?:not enough memory|can't allocate memory)|std::bad_alloc|"
                  r"^(?:\w+\.)*MemoryError\b")
_HOST_OOM = re.compile(r"DefaultCPUAllocator|std::bad_alloc|^(?:\w+\.)*MemoryError\b|OUT_OF_HOST_MEMORY")
_HOST_OOM_TITLES = {"weights_oom": "the host ran out of RAM loading the weights (not the GPU)",
                    "runtime_oom": "the host ran out of RAM while serving (not the GPU)",
                    "profile_oom": "the host ran out of RAM in the start-up's memory profile (not the GPU)",
                    "cudagraph_oom": "the host ran out of RAM while warming up (not the GPU)"}
_HOST_OOM_FIX = ("the host (or the container's memory limit) ran out of RAM: raise the container's memory limit or "
                 "free RAM (other processes); --swap-space, cpu_offload_gb and, on the CPU backend, "
                 "VLLM_CPU_KVCACHE_SPACE take RAM too")
# V0's worker process: `Exception in worker VllmWorkerProcess while processing method determine_num_available_blocks:`
_WORKER_METHOD = re.compile(r"while processing method (\w+):")
_OOM_RANK = 5  # between the specific start-up messages and the generic ones
_MAX_CUTS = 8  # cut tracebacks kept for the end of the log (a log of many is bounded)
_MAX_PROCESSES = 32  # processes whose traceback state is kept while another's lines are read


_NOT_SERVED_FIX = ("the request named a model or a path this server does not serve: send the model name it serves "
                   "(GET /v1/models lists it: --served-model-name, else the --model value exactly as given) to a base "
                   "URL that ends in /v1 (the OpenAI routes are /v1/chat/completions and /v1/completions)")

_PLACEMENT_FIX = ("Ray cannot give vLLM's workers the GPUs its placement group asks for: tensor_parallel_size x "
                  "pipeline_parallel_size must not exceed the GPUs the Ray cluster has (`ray status` lists them; "
                  "every node must have joined), and a `node:IP` in the request must be a node of the cluster: set "
                  "VLLM_HOST_IP on each node to the address it joined Ray with")


# "/v1//models", "/v1/v1/chat/completions", "host:8000//v1/..." (not the "//" of a scheme).
_MALFORMED_PATH = re.compile(r"/v1//|/v1/v1/|[^:/\s]//(?:v1/)?(?:chat/completions|completions|models|embeddings)\b")
_MALFORMED_PATH_FIX = ("the client's base URL makes paths vLLM does not serve (it answers them 404): set it to exactly "
                       "http://HOST:PORT/v1, without a trailing slash or a second /v1 (the client adds "
                       "/chat/completions, /models itself)")
_ACCESS_NOT_SERVED = re.compile(r'"(?:POST|PUT) /\S* HTTP/1\.[01]" 404\b')  # a GET of `/` or a favicon is a browser
# Ordered by how specific the evidence is: a lower index is the root cause, so "No available memory
# for the cache blocks" beats the generic "Engine core initialization failed" vLLM prints after it.
RULES: tuple[Rule, ...] = (
    Rule("max_len_exceeds_kv", "max_model_len does not fit in the KV cache",
         re.compile(r"max seq len \((?P<wanted>\d+)\).*?larger than the (?:available KV cache memory|maximum number of "
                    r"tokens that can be stored in KV cache \((?P<kv_tokens>\d+)\))"
                    r"(?:.*?estimated maximum model length is (?P<estimate>\d+))?"),
         _max_len_fix, change=_max_len_change),
    # The same check's tail, vLLM's words and both its numbers, under a head retyped or reworded ("max sew len",
    # "max_model_len", a translation): the length asked for, and the tokens the KV cache holds.
    Rule("max_len_exceeds_kv", "max_model_len does not fit in the KV cache",
         re.compile(r"\((?P<wanted>\d+)\) is larger than the maximum number of tokens that can be stored in KV "
                    r"cache \((?P<kv_tokens>\d+)\)"),
         _max_len_fix, change=_max_len_change),
    # The message alone, its numbers cut off (an excerpt, or a terminal's hard wrap the paste lost).
    Rule("max_len_exceeds_kv", "max_model_len does not fit in the KV cache",
         re.compile(r"To serve at least one request with the model's max seq len \((?P<wanted>\d+)\)"),
         _max_len_fix),
    Rule("kv_cache_no_blocks", "no memory left for the KV cache after loading the weights",
         re.compile(r"No available memory for the cache blocks|No available (?:KV )?cache blocks|"
                    r"# (?:GPU|cuda|gpu|CUDA|xpu|XPU|hpu|HPU|npu|NPU) blocks: (?:0|-\d+)\b|"
                    r"insufficient (?:GPU )?memory for (?:the )?KV cache|"
                    # vLLM's memory figures: what is left for the KV cache is negative or zero.
                    r"(?:reserved for KV [Cc]ache is|[Aa]vailable KV cache memory:?|available_kv_cache_memory=?) ?"
                    r"(?:-\d[\d.]*|0(?:\.0+)?) ?GiB"),
         _const("raise gpu_memory_utilization, lower max_num_seqs / max_num_batched_tokens, or use a "
                "smaller (quantized) checkpoint; on the CPU engine raise VLLM_CPU_KVCACHE_SPACE")),
    Rule("insufficient_free_memory", "less free GPU memory than gpu_memory_utilization asks for",
         re.compile(r"Free memory on device(?: \S+)? \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup "
                    r"is less than desired GPU memory utilization"),
         _free_memory_fix, retryable=True,
         change=lambda m: {"gpu_memory_utilization": t} if (t := _free_memory_target(m)) > 0 else None),
    # The same check quoted without its figures (a title, a wrapper's summary of vLLM's error)
    Rule("insufficient_free_memory", "less free GPU memory than gpu_memory_utilization asks for",
         re.compile(r"Free memory on device(?: \S+)? on startup is less than desired GPU memory utilization"),
         _const("free the GPU for vLLM (another process, or a trainer in the same job, holds memory: nvidia-smi) or "
                "lower gpu_memory_utilization to the free share"), retryable=True),
    Rule("insufficient_free_memory", "GPU memory changed under vLLM while it profiled (another process uses the GPU)",
         re.compile(r"Error in memory profiling\. Initial free memory (?P<free>[\d.]+) GiB, current free memory"),
         _const("stop the other processes on the GPU (nvidia-smi) or lower gpu_memory_utilization"), retryable=True),
    Rule("weights_oom", _OOM_TITLES["weights_oom"],
         re.compile("Failed to load model (?:-|\u2013|\u2014|:) ?not enough GPU memory|"
                    r"Failed to (?:create|load|allocate) [\w ]*weights?\b.*(?:out of memory|OutOfMemory)"),
         _const(_OOM_FIXES["weights_oom"])),
    # The host (not the GPU) could not map a checkpoint's shard: RAM, or a container's memory limit.
    Rule("weights_oom", "the host ran out of memory mapping the weights (RAM, not the GPU)",
         re.compile(r"unable to mmap \d+ bytes from file .{0,300}: Cannot allocate memory"),
         _const("the host's RAM (or the container's memory limit) could not map a shard of the checkpoint: raise the "
                "container's memory limit or free RAM (other processes; --swap-space and cpu_offload_gb take RAM "
                "too); the GPU was not what ran out")),
    Rule("profile_oom", "out of memory while warming up the sampler with a full batch",
         re.compile(r"out of memory occurred when warming up (?:the )?sampler with (?P<seqs>\d+) dummy requests"),
         lambda m, flags: f"{_set('max_num_seqs', max(1, int(m.group('seqs')) // 2), flags)} (vLLM warmed the "
                          f"sampler with {m.group('seqs')} requests at once), or lower gpu_memory_utilization"),
    # An excerpt often keeps only the traceback through the capture (vLLM 0.5-0.6 workers), not the OOM line.
    Rule("cudagraph_oom", "the start-up died while capturing CUDA graphs",
         re.compile(r"capture_model\(|cuda_graph\.capture_end\(\)|CUDA out of memory.*graph"),
         _const(_OOM_FIXES["cudagraph_oom"]), change=lambda _m: {"enforce_eager": True}),
    # The driver's own libraries are not there at all (a container started without the NVIDIA runtime): the loader
    # names the library first, NVML its shared library, and vLLM then finds no platform to run on.
    Rule("cuda_driver_mismatch", "vLLM sees no NVIDIA driver (its libraries are not in this container or host)",
         re.compile(r"\b(?:libcuda|libnvidia-ml)\.so[\d.]*: cannot open shared object file|"
                    r"NVML Shared Library Not Found|No platform detected, vLLM is running on UnspecifiedPlatform|"
                    # torch finding no GPU at all, and vLLM's device check that follows from no platform
                    r"RuntimeError: No CUDA GPUs are available|Failed to infer device type"),
         _const("give vLLM the driver: run the container with the NVIDIA runtime (`docker run --gpus all`; Kubernetes "
                "`runtimeClassName: nvidia` beside the nvidia.com/gpu limit), and check that `nvidia-smi` works where "
                "vLLM runs; on a bare host, install the NVIDIA driver; and check that CUDA_VISIBLE_DEVICES, if set, "
                "names GPUs that exist")),
    Rule("cuda_driver_mismatch", "the NVIDIA driver is too old for this CUDA build",
         re.compile(r"Error 804: forward compatibility|Error 803: system has unsupported display driver|"
                    r"unsupported display driver / cuda driver combination|"
                    r"NVIDIA driver (?:on your system |version )?is too old|"
                    r"CUDA driver version is insufficient|no kernel image is available for execution|"
                    r"CUDA error: unsupported PTX|Found no NVIDIA driver on your system|"
                    r"is not compatible with the current PyTorch installation|"
                    r"install a PyTorch release that supports one of these CUDA versions|"
                    r"(?:undefined symbol|cannot open shared object file).*(?:libcuda|libcudart|libnvrtc)|"
                    r"PTX was compiled with an unsupported toolchain|"
                    # the NVIDIA container runtime's check of an image's CUDA against the host's driver
                    r"requirement error: unsatisfied condition: cuda ?>= ?\d"),
         _const("upgrade the NVIDIA driver (CUDA 12.4 needs >= 550) or install a vLLM/torch built for the driver's "
                "CUDA version and this GPU's architecture (`qwenops doctor` compares them)")),
    # The driver itself is half there: its kernel module and its user-space library differ (an upgrade without a
    # reboot), or an NVSwitch system's Fabric Manager is not running ("system not yet initialized").
    Rule("cuda_driver_mismatch", "the NVIDIA driver's kernel module and library differ, or the GPU system is not up",
         re.compile(r"[Dd]river/library version mismatch|CUDA error: system not yet initialized|"
                    r"cudaErrorSystemNotReady"),
         _const("the NVIDIA driver's kernel module and its library differ (an upgrade without a reboot: reboot, or "
                "reload the nvidia modules; `nvidia-smi` shows the same error), or on an NVSwitch system the Fabric "
                "Manager is not running (`systemctl start nvidia-fabricmanager`, of the driver's version)")),
    # A kernel vLLM or a library compiles at start-up (FlashInfer's sampler, a torch extension) failed to build:
    # the compiler's command under an ERROR, or ninja's and torch's words for a failed build.
    Rule("unclassified", "a kernel failed to compile at start-up (a broken or mismatched CUDA toolchain)",
         re.compile(r"^(?:ERROR|CRITICAL)\b.*?\bnvcc\s.*?\s-c\s+\S+\.cu\b|^FAILED: \S+\.o\b|"
                    r"ninja: build stopped: subcommand failed|Error building extension '[\w.-]+'|"
                    r"error: command '\S*nvcc' failed"),
         _const("a kernel compiled at start-up (FlashInfer's sampler, a torch extension) did not build: install the "
                "CUDA toolkit whose nvcc matches torch's CUDA (`nvcc --version` against `python -c \"import torch; "
                "print(torch.version.cuda)\"`), or use vLLM's prebuilt wheel; VLLM_USE_FLASHINFER_SAMPLER=0 skips "
                "FlashInfer's sampler"), when="any"),
    Rule("port_in_use", "the port is already taken",
         re.compile(r"\[Errno 98\].*address already in use|Address already in use|\[Errno 48\]|EADDRINUSE|"
                    r"[Aa]ddress in use|[Pp]ort(?: \S+)? is (?:already )?(?:being )?used by (?:an)?other process|"
                    r"Only one usage of each socket address|"
                    # Docker publishing the container's port on a host port something else holds
                    r"Bind for \S+:\d+ failed: port is already allocated|bind: address already in use"),
         _const("stop the process on that port (`ss -ltnp`) or pass another --port"), retryable=True),
    Rule("model_not_found", "the model path or repository cannot be found or opened",
         re.compile(r"Invalid repository ID or local directory specified.*|"
                    r"does not appear to have a file named config\.json|Repository Not Found|"
                    r"is not a local folder and is not a valid model identifier|"
                    r"(?:Cannot access gated repo|gated repo|GatedRepoError)|"
                    # a model hub's answer for a repo it does not have (or will not show): Hugging Face, its mirror,
                    # ModelScope; and a 404 from any hub's model API (an HF_ENDPOINT or private ModelScope)
                    r"(?:401|403|404) Client Error.*(?:huggingface\.co|hf-mirror\.com|modelscope\.(?:cn|ai))|"
                    r"404 Client Error.*/api/(?:v1/)?models/|"
                    r"We couldn't connect to 'https://huggingface\.co'|LocalEntryNotFoundError|"
                    r"No such file or directory: '[^']*config\.json'|"
                    # vLLM's config reader given a directory with no config.json (nor GGUF, nor Mistral's params)
                    r"No supported config format found in |"
                    # vLLM 0.32 hands a missing local directory to huggingface_hub as a repo id:
                    r"Repo id must be in the form 'repo_name' or 'namespace/repo_name'|"
                    r"does not appear to have (?:a )?files? named|Cache directory not found|CacheNotFound|"
                    r"(?:RepositoryNotFound|RevisionNotFound|EntryNotFound|HFValidation)Error|OfflineModeIsEnabled|"
                    # transformers' OSError for a path or id it cannot open, in its wordings across versions
                    r"Can't load (?:the )?(?:config|tokenizer|configuration)(?: file)? (?:for|of) |"
                    r"is the correct path to a directory containing|Incorrect path_or_model_id|"
                    # any model hub's own "no such repo / revision / file" exception (Hugging Face, ModelScope)
                    r"\b(?:huggingface_hub|modelscope)(?:\.\w+)*\.\w*(?:NotExist|NotFound)\w*Error|"
                    # ModelScope's hub API for a repo id it does not have (a local directory that is not there is
                    # looked up as one with VLLM_USE_MODELSCOPE)
                    r"The request model: ?\S+ does not exist|"
                    r"(?:model|Model) (?:path|directory) .* does not exist|"
                    # a LoRA adapter's directory that holds no adapter (V1's LoRA worker manager)
                    r"No adapter found for|Cannot find any of \[.adapter_config\.json.\]"),
         _const("check `model:` in the profile (a local directory must exist; a repo id must be spelt right, and a "
                "gated one needs HF_TOKEN and accepted terms); for cpu-tiny run `qwenops model build-tiny`")),
    Rule("invalid_argument", "vLLM rejected a command-line flag",
         re.compile(r"error: (unrecognized arguments|argument [^:]+: invalid .*)|"
                    # argparse's words quoted in a title or the reporter's prose, the error line itself cut off
                    r"\bunrecognized arguments?\b"),
         _const("remove or fix that flag in the profile's extra_args (see `vllm serve --help`)")),
    Rule("invalid_config", "max_model_len is longer than the model supports",
         re.compile(r"User-specified max_model_len \((?P<wanted>\d+)\) is greater than the derived "
                    r"max_model_len \((?:(?P<key>\w+)=)?(?P<limit>\d+)"),
         lambda m, flags: f"{_set('max_model_len', int(m.group('limit')), flags)}, the model's "
                         f"{m.group('key') or 'max_position_embeddings'}"),
    # The scheduler's check (V0, and V1 without chunked prefill): one step must hold a whole prompt.
    Rule("invalid_config", "max_num_batched_tokens is smaller than max_model_len",
         re.compile(r"`?max_num_batched_tokens`? \((?P<batched>\d+)\) is smaller than `?max_model_len`? "
                    r"\((?P<limit>\d+)\)"),
         lambda m, flags: f"raise max_num_batched_tokens to at least {m.group('limit')} "
                         f"(`--set max_num_batched_tokens={m.group('limit')}`), enable chunked prefill, or "
                         f"{_set('max_model_len', int(m.group('batched')), flags)}"),
    # vLLM's parallel-config check (0.1 on, V0 and V1): tensor parallelism splits the attention heads, expert
    # parallelism the experts; a size that does not divide them is refused before anything loads.
    Rule("invalid_config", "the parallel size does not divide the model's attention heads or experts",
         re.compile(r"number of (?:attention |key[_ -]value |KV )?heads \((?P<heads>\d+)\) must be divisible by "
                    r"(?:the )?tensor parallel size \((?P<tp>\d+)\)|"
                    r"must be divisible by (?:tp|ep|pp|dp)_size ?= ?\d+|"
                    # a scheduler (GPUStack) that chose the size says so in these words
                    r"divisible by the number of attention heads"),
         lambda m, flags: _parallel_fix(m)),
    # A dtype the model itself refuses (vLLM's per-architecture list: Gemma 2/3, PLaMo2, GLM-4 in float16).
    Rule("invalid_config", "the model refuses this dtype",
         re.compile(r"(?:does not support|rejects?|refuses?) (?:float16|fp16|FP16)\b.*[Nn]umerical instability"),
         _const("set dtype: bfloat16 (`--set dtype=bfloat16`), or float32 on a GPU without bfloat16: this model "
                "overflows in float16")),
    # Ray cannot place the workers' placement group: more GPUs than the cluster has, or a node (`node:IP`, from
    # VLLM_HOST_IP) that is not in it. Ray's autoscaler calls the request infeasible; vLLM gives up after its wait.
    Rule("invalid_config", "the Ray cluster cannot place vLLM's workers (the GPUs or the node they ask for)",
         re.compile(r"No available node types can fulfill resource request|"
                    r"Cannot provide a placement group of|"
                    r"number of required GPUs exceeds the total number of available GPUs|"
                    r"Tensor parallel size may exceed available GPUs"),
         _const(_PLACEMENT_FIX)),
    Rule("invalid_config", "vLLM is waiting for Ray to place its workers (the GPUs or the node they ask for)",
         re.compile(r"Waiting for creating a placement group of specs"),
         _const(_PLACEMENT_FIX), severity="warning"),
    Rule("invalid_config", "vLLM rejected the configuration",
         re.compile(r"(pydantic_core\._pydantic_core\.)?ValidationError: \d+ validation error.*|"
                    r"ValueError: User-specified max_model_len .*|"
                    # `--task embedding` on a generative model (0.6-0.9), the runner's words later.
                    r"This model does not support (?:the )?'?\w+'? (?:task|runner)|"
                    # a dtype the checkpoint's quantization cannot run in (AWQ in bfloat16, 0.7)
                    r"is not supported for quantization method \w+|"
                    # a LoRA adapter trained on modules vLLM does not serve LoRA on (a vision tower's, an aligner's)
                    r"expected target modules in \[.*\] but received|"
                    # a kind of parallelism this model's architecture lacks (pipeline parallel before 0.7)
                    r"\b(?:Pipeline|Tensor|Expert|Data|Context|Sequence) parallel(?:ism)? is (?:only supported for|"
                    r"not (?:yet )?supported (?:for|by|with))|"
                    # a quantization the checkpoint does not have, or one vLLM does not know; scheduler sizes
                    # that contradict each other
                    r"does not match the quantization method specified in the `quantization` argument|"
                    r"Unknown quantization method: |"
                    r"max_num_batched_tokens \(\d+\) must be greater than or equal to max_num_seqs"),
         _const("fix the profile value the quoted line names")),
    # CUDA initialised in the parent before vLLM forked its workers (a script that touched torch.cuda first)
    Rule("invalid_config", "CUDA was initialised before vLLM forked its worker processes",
         re.compile(r"Cannot re-initialize CUDA in forked subprocess"),
         _const("start vLLM's workers with spawn (`VLLM_WORKER_MULTIPROC_METHOD=spawn`), or do not touch "
                "torch.cuda in the process before vLLM starts")),
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"maximum context length is (?P<limit>\d+) tokens\. However, you requested \d+ tokens"
                    r"(?: \((?P<prompt>\d+) in the messages)?"),
         _too_long_fix, severity="warning", when="service"),
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"maximum context length is (?P<limit>\d+) tokens and your request has (?P<prompt>\d+) input"),
         _too_long_fix, severity="warning", when="service"),
    # The message's head alone: vLLM words its end differently across versions ("you requested N tokens",
    # "your request has N input tokens", "you requested 0 output tokens and your prompt contains at least N").
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"maximum context length is (?P<limit>\d+) tokens"),
         _too_long_fix, severity="warning", when="service"),
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"prompt \(length (?P<prompt>\d+)\) is longer than the maximum model length(?: of)? "
                    r"(?P<limit>\d+)"),
         _too_long_fix, severity="warning", when="service"),
    # V0's multimodal input check (0.6-0.8): the prompt's text and multimodal tokens together, against the context.
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"prompt \(total length (?P<prompt>\d+)\) is too long to fit into the model "
                    r"\(context length (?P<limit>\d+)\)"),
         _too_long_fix, severity="warning", when="service"),
    # The newer validation's words: max_tokens against max_model_len (or what it is derived from), as key=value.
    Rule("request_too_long", "a request asked for more tokens than max_model_len",
         re.compile(r"max_tokens=\d+ ?(?:cannot|must not|should not) be (?:greater|larger) than "
                    r"max_model_len(?:=[a-z_]{1,40})?=(?P<limit>\d+)"),
         _too_long_fix, severity="warning", when="service"),
    # V0 gives the answer what is left of the context: a prompt longer than max_model_len leaves less than 0.
    Rule("request_too_long", "a prompt alone was longer than max_model_len",
         re.compile(r"max_tokens must be at least 1, got -\d+"),
         _const("the prompt alone is longer than max_model_len: trim the prompt, or raise max_model_len if the KV "
                "cache has room (`qwenops plan --max-model-len N`); vLLM kept serving"),
         severity="warning", when="service"),
    Rule("request_too_long", "a request was longer than max_model_len",
         re.compile(r"(?:Prompt|Input prompt) (?:length of |\()?(?P<prompt>\d+)(?: tokens\))? is (?:longer than the "
                    r"maximum model length(?: of)?|too long and exceeds (?:the )?limit of) (?P<limit>\d+)"),
         _too_long_fix, severity="warning", when="service"),
    # vLLM rejects a request in preprocessing when its prompt fails validation, and length is what fails
    # there in practice; an excerpt often ends before the ValueError that gives the numbers.
    Rule("request_too_long", "a request was rejected while its prompt was checked (most often: too long)",
         re.compile(r"Error in preprocessing prompt inputs"),
         _const("find the ValueError below this line in the log: if it is \"maximum context length\", lower the "
                "request's max_tokens or trim the prompt, or raise max_model_len; vLLM kept serving"),
         severity="warning", when="service"),
    # Triton's refusal to compile an FP8 (e4m3, "fp8e4nv") kernel for a GPU older than compute capability 8.9;
    # vLLM's FP8 linear layers reach it on Ampere and older.
    Rule("unsupported_dtype", "this GPU has no FP8 support (an FP8 checkpoint needs compute capability 8.9)",
         re.compile(r"\bfp8e4nv\b.{0,40}not supported|not supported in this architecture\. The supported fp8 dtypes|"
                    r"fp8e4nv data type is not supported on CUDA arch"),
         _const("serve a checkpoint this GPU can run: AWQ or GPTQ (e.g. Qwen/Qwen3-14B-AWQ) instead of FP8, which "
                "needs compute capability 8.9 or newer (Ada, Hopper); `nvidia-smi --query-gpu=compute_cap "
                "--format=csv` shows this GPU's")),
    Rule("unsupported_dtype", "this GPU does not support the model's dtype",
         re.compile(r"Bfloat16 is only supported on GPUs with compute capability|"
                    r"(?:bfloat16|bf16|BF16|[Ff]loat8|FP8|fp8)\b.*?not supported (?:on|by) "
                    r"(?:this|the|your)|"
                    r"compute capability (?:of )?at least \d+\.\d+|"
                    # any quantization method's check (0.4 on): "fp8 ... not supported for the current GPU"
                    r"quantization method \w+ is not supported for the current GPU"),
         _const("set dtype: float16 (`--set dtype=half`; this GPU has no bfloat16), or a checkpoint and "
                "quantization this GPU's compute capability supports")),
    # vLLM's OpenAI server's own words when a request's images or videos did not load (0.6, serving_chat.py).
    Rule("media_fetch_error", "vLLM could not download a request's image or media",
         re.compile(r"Error in loading multi-modal data|Failed to fetch (?:image|video|audio)\b|"
                    # an HTTP client's error status for a URL that names a media file (aiohttp, requests, httpx)
                    r"(?:ClientResponseError|HTTPError|HTTPStatusError)\b.*\b[45]\d\d\b.*"
                    r"\.(?:jpe?g|png|gif|webp|bmp|tiff?|mp4|webm|mov|avi|mkv|wav|mp3|flac|ogg|m4a)\b"),
         lambda _m, _f: _MEDIA_FIX, when="any"),
    # Client-side logs: the client library's own exception says how the answer ended.
    Rule("stream_interrupted", "the connection closed before the answer was complete",
         re.compile(r"RemoteProtocolError|incomplete chunked read|peer closed connection without sending complete|"
                    r"ClientPayloadError|ChunkedEncodingError|TransferEncodingError|Response payload is not completed|"
                    r"ServerDisconnectedError|Server disconnected without sending a response|IncompleteRead|"
                    r"Not enough data (?:for|to) satisfy (?:transfer|content) length|"
                    # curl's and Node's (node-fetch, undici) words for a body cut short
                    r"curl: \((?:18|92)\) (?:transfer closed with outstanding read data|HTTP/2 stream \d+ was not "
                    r"closed cleanly)|ERR_STREAM_PREMATURE_CLOSE|Premature close|UND_ERR_SOCKET|"
                    # a browser's name for the same cut (Firefox, Chromium)
                    r"NS_ERROR_NET_PARTIAL_TRANSFER|ERR_INCOMPLETE_CHUNKED_ENCODING|"
                    # urllib3's chunk reader, Java's OkHttp, nginx seeing the server close mid-body
                    r"InvalidChunkLength|unexpected end of stream on |"
                    r"upstream prematurely closed connection while reading upstream"),
         _const("the server or a proxy closed the stream mid-answer: check the server log at that time for an "
                "engine death (then fix that), else raise the proxy's read/idle timeout (nginx proxy_read_timeout) "
                "and retry"),
         when="any", retryable=True),
    Rule("client_timeout", "the client timed out waiting for the answer",
         re.compile(r"ReadTimeout|APITimeoutError|Request timed out|Read timed out|ReadTimeoutError|"
                    r"TimeoutError: timed out|asyncio\.TimeoutError|asyncio\.exceptions\.TimeoutError|"
                    # the same in other clients' words: aiohttp, Python's socket and ssl, curl, Node's fetch (undici),
                    # Go's net/http, LiteLLM
                    r"ServerTimeoutError|SocketTimeoutError|socket\.timeout: timed out|The read operation timed out|"
                    r"curl: \(28\) Operation timed out|UND_ERR_(?:HEADERS|BODY)_TIMEOUT|"
                    r"Client\.Timeout exceeded while (?:awaiting headers|reading body)|litellm\.Timeout|"
                    # a proxy in front of the server gave up waiting for the answer (HTTP 504)
                    r"\b504 Gateway Time-?out|Gateway Time-?out\b|"
                    # nginx's own log line for it; Java's OkHttp and Node's request/net words for a read's timeout
                    r"upstream timed out \(110: Connection timed out\) while reading "
                    r"(?:response header from )?upstream|"
                    r"SocketTimeoutException: timeout\b|\bESOCKETTIMEDOUT\b|\bread ETIMEDOUT\b"),
         _const("the answer took longer than the client's read timeout (or a proxy's in front of the server: nginx "
                "proxy_read_timeout): raise it (openai: `timeout=`, httpx: `Timeout(read=...)`) to cover the longest "
                "answer, or cap max_tokens; `qwenops troubleshoot --probe` measures the longest answer"),
         when="any", retryable=True),
    Rule("auth", "the server refused the request's API key",
         re.compile(r"AuthenticationError|PermissionDeniedError|Error code: 40[13]|status_code=40[13]|"
                    r"\b40[13] (?:Unauthorized|Forbidden)|Incorrect API key|[Ii]nvalid API key|"
                    r"\b40[13] Client Error: (?:Unauthorized|Forbidden) for url|"  # requests' raise_for_status
                    r"\"error\"\s*:\s*\"Unauthorized\"|"
                    # a JSON error body that carries the status itself (a gateway's, an OpenAI-style server's)
                    r"(?:code|status|status_code)[\"'] ?: ?40[13][,} \n]"),
         _const("send the server's key (`Authorization: Bearer $VLLM_API_KEY`; the client's api_key must match "
                "the server's --api-key), or check a proxy's auth in front of it"),
         when="any"),
    # The openai client refuses to start without a key, even for a server that takes none (vLLM without --api-key).
    Rule("auth", "the OpenAI client was given no API key",
         re.compile(r"The api_key client option must be set either by passing api_key to the client or by setting "
                    r"the OPENAI_API_KEY environment variable"),
         _const("give the client a key: the server's --api-key if it has one, else any word (`OPENAI_API_KEY=EMPTY`, "
                "or api_key=\"EMPTY\" where the client is made); a server without --api-key ignores it"),
         when="any"),
    # The server refused one request for its own parameters (vLLM's 400 and its error body, as a client library or
    # an access log shows it) and went on serving; a too-long prompt's 400 is named above, by its numbers.
    Rule("unclassified", "the server refused a request's parameters (HTTP 400)",
         re.compile(r"\bBadRequestError\b|Error code: 400\b|\b400,? (?:Client Error: )?Bad Request\b|"
                    r"status_code=400\b|[\"'](?:code|status|status_code)[\"'] ?: ?400[,} \n]|"
                    # the server's request validation naming a field of the body (FastAPI's, pydantic's `loc`):
                    # a body made for another endpoint or API (a completions `prompt` posted to chat)
                    r"[\"']loc[\"'] ?: ?[\[(][\"']body[\"'],"),
         _const("the server answered 400 to the request's own parameters and went on serving: change, in the client, "
                "what the quoted message names (a sampling value out of range, more logprobs than the server's "
                "--max-logprobs, a message or tool format this model's chat template refuses; a required field "
                "missing is a body made for another endpoint, such as a completions `prompt` posted to "
                "/v1/chat/completions)"),
         severity="warning", when="any"),
    # A request path a base URL with a trailing slash or a second /v1 makes: vLLM serves neither.
    Rule("unclassified", "the client's base URL is malformed (a doubled slash or /v1 in the request path)",
         _MALFORMED_PATH, _const(_MALFORMED_PATH_FIX), severity="warning", when="any"),
    # The server answered 404 in its OpenAI error body: the request named a model it does not serve.
    Rule("unclassified", "the server answered 404: it serves no model or route by the name the request used",
         re.compile(r"Error code: 404\b|[\"']code[\"']\s*:\s*404\b|\bNotFoundError\b.{0,300}\b404\b"),
         _const(_NOT_SERVED_FIX), severity="warning", when="any"),
    # A client's own words for a connection it could not open (Python's libraries, curl, Node): the request never
    # reached a server.
    Rule("unclassified", "the client could not connect to the server",
         re.compile(r"APIConnectionError|\bConnection error\.|httpx\.ConnectError|ClientConnectorError|"
                    r"requests\.exceptions\.ConnectionError|Failed to establish a new connection|"
                    r"Cannot connect to host|curl: \(7\) (?:Failed to connect|Couldn't connect)|"
                    r"\bconnect ECONNREFUSED \S+:\d+|"
                    # a connection that was never answered (a firewall, a wrong address): connect's own timeout
                    r"\bConnectTimeout(?:Error)?\b|\[Errno 110\] Connection timed out"),
         _const(_CONNECT_FIX), severity="warning", when="any"),
    Rule("invalid_argument", "vLLM's argument parser refused the command line",
         re.compile(r"^usage: \S+(?: \S+)? \[-h\]"),
         _const("find the `error:` line argparse printed under this usage text: remove or fix that flag in the "
                "profile's extra_args (see `vllm serve --help`)")),
    Rule("kv_cache_preemption", "requests were preempted: the KV cache is too small for the batch",
         re.compile(r"is preempted (?:by|in) PreemptionMode\.\w+ mode because there is not enough KV cache space"),
         _preemption_fix, severity="warning", when="service"),
    Rule("engine_stalled", "the engine stopped making progress",
         re.compile(r"(?:Watchdog caught collective operation timeout|NCCL (?:watchdog )?timeout)|"
                    r"RPC call to \w+ timed out|Engine (?:core )?(?:is )?hung|Engine iteration timed out|"
                    # torch.distributed's TCP transport: a peer of a collective (a trainer syncing weights, another
                    # rank) sent nothing for the whole timeout
                    r"\[c10d\] waitForInput: .{0,300}timed out after \d+ ?ms"),
         _const("the engine is blocked (a stuck worker, NCCL, or an overloaded CPU): check `qwenops status` and "
                "the host's CPU; restart the server; `qwenops serve` restarts a stalled engine itself"),
         when="any", retryable=True),
    Rule("engine_dead", "the engine process died",
         # A traceback through run_busy_loop / run_engine_loop is the engine dying in service (cause often cut off).
         re.compile(r"EngineDeadError|AsyncEngineDeadError|MQEngineDeadError|Engine core initialization failed|"
                    r"EngineCore encountered an issue|EngineCore failed to start|Engine loop has died|"
                    r"Background loop has errored|Engine background task failed|"
                    r"Engine core process \S+ died unexpectedly|Engine core proc \S+ died unexpectedly|"
                    r"Worker proc \S+ died unexpectedly|Engine(?:Core)? is already dead|"
                    r"Engine process failed to start|^ERROR .*, in (?:run_busy_loop|run_engine_loop)$|"
                    # V0's AsyncLLMEngine: the callback that logs its background loop ending with an exception
                    r"Exception in callback .{0,40}\b(?:_log_task_completion|_raise_exception_on_finish)\b|"
                    # a collective failing inside the model's execution: the workers cannot go on
                    r"Error in model execution: NCCL error|"
                    # V1's engine client when a worker process died (its monitor's signal): the engine shuts down
                    r"Got fatal signal from worker processes"),
         _const("read the traceback above this line in the server log; the first error there is the cause"),
         when="any", retryable=True),
)
# The engine client's line when its engine process ends (at an offline script's exit too).
_MALFORMED_PATH_RULE = next(rule for rule in RULES if rule.pattern is _MALFORMED_PATH)
_CLIENT_TEARDOWN = re.compile(r"Engine core proc(?:ess)? \S+ died unexpectedly, shutting down client")
# Which OOM category each phase implies, when the traceback frames do not say.
# (Not WARMUP: a server that captured its graphs serves next, and an excerpt often lacks the line that says so.)
_CUT_AT_PHASE: dict[Phase, FramePhase] = {Phase.PROFILING: "profile", Phase.KV_CACHE: "kv_setup"}
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
# Other programs' error lines in the same paste (a proxy's, a router's): nginx's `[error]`, logrus's `level=error`,
# glog's `E0822 16:31:16`; uvicorn's `ERROR:    Exception in ASGI application` (a request's unhandled exception, its
# 500). Reported like vLLM's own, only when nothing else in the log is an error.
_OTHER_ERROR_LINE = re.compile(r"^(?:ERROR|CRITICAL):\s+Exception in ASGI application|"
                               r"^\[(?:error|crit|alert|emerg)\] |\blevel=(?:error|fatal)\b|^[EF]\d{4} \d\d:\d\d:\d\d")
_MODEL_NOT_GENERATIVE = Rule(
    "model_not_generative", "vLLM loaded the model for a task other than text generation",
    re.compile(r"Supported tasks: \[(?P<tasks>[^\]]*)\]"),
    _const("give the checkpoint a *ForCausalLM `architectures` entry in config.json (for cpu-tiny: "
           "`qwenops model build-tiny --force DIR`); a chat server needs the 'generate' task"),
)
UNCLASSIFIED_RANK = len(RULES)  # an error no rule explains: after every named cause, before the engine's death
GENERIC_RANK = len(RULES) + 1  # engine_dead: always a consequence when anything else is known
_RANKS = {id(rule): (GENERIC_RANK if rule.category == "engine_dead" else rank) for rank, rule in enumerate(RULES)}
# "Waiting for a free shared memory block": benign while a slow capture or compile goes on, a stall when
# nothing follows it. Judged at the end of the log, by whether anything progressed after it.
_SHM_WAIT = re.compile(r"No available shared memory broadcast block found in \d+ seconds?")
# vLLM's memory figures, which decide between causes: the longest context, the KV cache's blocks.
_MAX_LEN = re.compile(r"\bmax_seq_len=(?P<len>\d+)|\bmax_model_len=(?P<len2>\d+)|Using max model len (?P<len3>\d+)")
_BLOCK_SIZE = re.compile(r"\bblock_size=(?P<size>\d+)")
_BLOCKS = re.compile(r"# (?:GPU|cuda|gpu|CUDA) blocks: (?P<blocks>[1-9]\d*)")
# V1's figures for the same check: the tokens the KV cache holds, and how many max-length requests fit in it (both
# lines are scanner candidates already: _KV_ROOM and the KV cache phase's pattern hold them).
_KV_TOKENS = re.compile(r"GPU KV cache size: (?P<tokens>[1-9][\d,]{0,15}) tokens")
_CONCURRENCY = re.compile(r"Maximum concurrency for (?P<len>[1-9][\d,]{0,15}) tokens per request: "
                          r"(?P<times>\d{1,6}(?:\.\d{1,4})?)x")
# What vLLM said the KV cache got: memory left for it, its blocks, its tokens (room, or none).
_KV_ROOM = re.compile(r"(?:Available KV cache memory:?|reserved for KV [Cc]ache is|available_kv_cache_memory=?) ?"
                      r"(?P<gib>-?\d+(?:\.\d+)?) ?GiB|# (?:GPU|cuda|gpu|CUDA) blocks: (?P<blocks>\d+)|"
                      r"KV cache size: (?P<tokens>\d[\d,]*) tokens")
# A CUDA OOM's own figures: memory this process does not hold is another process's (or a leak's).
_OOM_FIGURES = (
    # torch's older wording, and torch_npu's (an extra "N GiB current active" field among the figures)
    # (A number starts where no digit or dot stands before it, and has at most 20 characters: searched from every
    # position of a long run of digits, an unbounded `[\d.]+` first was quadratic in the run. Audit 10.)
    re.compile(r"(?<![\d.])(?P<total>[\d.]{1,20}) GiB total capacity; [\d.]{1,20} [KMG]iB already allocated; "
               r"(?:[\d.]{1,20} [KMG]iB [a-z ]{1,30}; ){0,3}"
               r"(?P<free>[\d.]{1,20}) (?P<fu>[KMG])iB free; (?P<this>[\d.]{1,20}) (?P<tu>[KMG])iB reserved in total "
               r"by PyTorch"),
    # (torch 2.1 spelt it "capacty")
    re.compile(r"total capac(?:i)?ty of (?P<total>[\d.]{1,20}) GiB of which (?P<free>[\d.]{1,20}) (?P<fu>[KMG])iB is "
               r"free\..{0,400}?this process has (?P<this>[\d.]{1,20}) (?P<tu>[KMG])iB memory in use"),
)
# The process died without a Python exception: a signal, a fatal error in native code.
_CRASH = re.compile(r"Fatal Python error: (?P<what>\w[\w ]*)|Segmentation fault|core dumped|"
                    r"\bSIG(?:SEGV|ABRT|BUS|ILL|KILL)\b|NCCL error|ncclInternalError|ncclSystemError|"
                    r"CUDA error: (?!out of memory)[\w -]+|"
                    # A compiled extension built for another torch or vLLM: a broken install.
                    r"undefined symbol: \S+|Failed to import from vllm\._C\b|"
                    # ... and macOS's dynamic loader's words for it.
                    r"Symbol not found: \S+")
_CLIENT_ABORT = re.compile(r"Aborted request(?:s)? \S+")
# A device's or a collective's fault (not out of memory), and the words that say it came while the engine ran the
# model (V0's wrapper of a failed execute_model): the engine cannot go on, whatever the kernel's bug was.
_DEVICE_FAULT = re.compile(r"NCCL error|nccl\w*Error|CUDA error|illegal memory access|device-side assert")
_IN_EXECUTION = re.compile(r"Error in model execution|inputs of failed execution")
# A start-up that this log shows from its launch (the command, vLLM's first lines) or that vLLM says failed: an
# OOM nothing else places happened while it started, before any phase line, so while the weights loaded.
_BOOT = re.compile(r"\bvllm serve |-m vllm\.entrypoints\.\S*api_server\b|vLLM API server version|non-default args:|"
                   r"\bargs: Namespace\(|Engine core initialization failed|EngineCore failed to start")
# ... and what says the engine was serving when it died (the API server's words for a dead engine).
_DIED_SERVING = re.compile(r"EngineDeadError|output_handler failed|Background loop has errored|Engine loop has died|"
                           r"EngineCore encountered a fatal error")
# The openai client's own log when a request failed and is sent again (a timeout, a dropped connection,
# 429 or 5xx): `openai._base_client - INFO - Retrying request to /chat/completions in 0.4 seconds`.
_CLIENT_RETRY = re.compile(r"openai\._base_client\W.*?Retrying(?: request)?|"
                           r"Retrying request to /(?:v1/)?(?:chat/completions|completions|responses)\b")
_OPENAI_CLIENT_FILE = re.compile(r"[/\\]openai[/\\]")
# The HTTP server's streaming response (starlette's StreamingResponse under vLLM's OpenAI server): an exception
# through it, with no engine frame beside it, was raised after the server had answered 200 and begun the stream.
_STREAM_RESPONSE_FILE = re.compile(r"[/\\]starlette[/\\]responses\.py$")


def _streamed(frames: list[tuple[str, str]]) -> bool:
    return any(_STREAM_RESPONSE_FILE.search(file) for file, _ in frames)
# vLLM's own HTTP server (a client that went away mid-request shows there, not a fetch of vLLM's).
_ASGI_EXCEPTION = re.compile(r"Exception in ASGI application")
_CLIENT_LIBRARY_FILE = re.compile(r"[/\\](?:httpcore|httpx|aiohttp|requests|urllib3)[/\\]")
_HTTP_SERVER_FILE = re.compile(r"[/\\](?:uvicorn|starlette|fastapi)[/\\]|h11_impl\.py")
# Any throughput line's figures: tokens a second for prompts and answers, requests running and waiting.
_THROUGHPUT = re.compile(r"Avg prompt throughput: (?P<prompt>\d+(?:\.\d+)?) tokens/s, Avg generation throughput: "
                         r"(?P<gen>\d+(?:\.\d+)?) tokens/s, Running: (?P<running>\d+) reqs,(?: Swapped: \d+ reqs,)? "
                         r"(?:Waiting|Pending): (?P<waiting>\d+) reqs")
# The offline LLM's progress bar: at 0 of N it has produced nothing yet; any other count is progress.
_PROMPTS_BAR = re.compile(r"Processed prompts:\s+(?P<percent>\d+)%\|[^|]{0,200}\|\s*(?P<done>\d+)/(?P<total>\d+)")
# What the block scanner looks for of it: the bar at its start and at its end (a redrawn line shows its last state).
_BAR_ENDS = re.compile(r"Processed prompts:\s+(?:0|100)%\|")
# The two states of it that are evidence, as the block scanner looks for them (throughput lines are most of a big
# log: only these are built): under a token a second in all while requests run; one running while more wait.
_SLOW = re.compile(r"Avg prompt throughput: 0\.\d+ tokens/s, Avg generation throughput: 0\.\d*[1-9]\d* tokens/s, "
                   r"Running: [1-9]")
_QUEUED = re.compile(r"Running: 1 reqs,(?: Swapped: \d+ reqs,)? (?:Waiting|Pending): (?:[2-9]|[1-9]\d+) reqs")
SLOW_LINES = 2
QUEUED_LINES = 3  # throughput lines with one request running and others waiting behind it
# Requests wait while none runs, no token moves and the KV cache has room: the scheduler admits nothing.
# A benchmark's summary: vLLM's benchmark_serving ("Mean TTFT (ms):  515454.10"), or a `mean` row (a pandas
# describe()) under a heading that names first-token latency in milliseconds.
_TTFT_HEAD = re.compile(r"(?:TTFT|[Tt]ime to [Ff]irst [Tt]oken|[Ff]irst[ -][Tt]oken [Ll]atency) ?\((?:ms|msecs?)\):?$")
_TTFT_MEAN = re.compile(r"^(?:(?P<own>Mean TTFT \(ms\):)|mean)\s+(?P<ms>\d{1,12}(?:\.\d{1,12})?)$")
TTFT_ROWS = 3  # rows under the heading before its mean (describe() prints count first)
SLOW_TTFT_MS = 10_000
# A benchmark's own summary of how long it ran against how fast its requests arrived (vLLM's benchmark_serving and
# `vllm bench serve`): a run many times longer than its arrivals took had requests waiting or answering slowly,
# whatever its latency rows say (an excerpt often ends before them).
_BENCH_FIGURE = re.compile(r"^(?:(?P<done>Successful requests):|(?P<rate>Request rate configured \(RPS\)|"
                           r"Traffic request rate):|(?P<took>Benchmark duration \(s\)):|"
                           r"(?P<end>Request throughput \(req/s\)):)\s*(?P<value>\d{1,12}(?:\.\d{1,12})?|inf)$")
# ... as the block scanner looks for it: the figures' names alone (counted digits cost the automaton states).
_BENCH_CANDIDATE = re.compile(r"Successful requests:|Request rate configured \(RPS\):|Traffic request rate:|"
                              r"Benchmark duration \(s\):|Request throughput \(req/s\):")
BENCH_SLOWER = 4  # a run this many times longer than its arrivals: requests waited (or answered) that long
BENCH_SECONDS = 60
_NOTHING_ADMITTED = re.compile(r"Avg prompt throughput: 0\.0 tokens/s, Avg generation throughput: 0\.0 tokens/s, "
                               r"Running: 0 reqs,(?: Swapped: 0 reqs,)? (?:Waiting|Pending): (?P<waiting>[1-9]\d*) "
                               r"reqs, GPU KV cache usage: (?P<usage>\d|[1-8]\d|9[0-4])\.\d+%")


def _oom_other_gib(text: str) -> tuple[float, float] | None:
    """(GiB that other processes hold, the GPU's total) from an OOM message's figures, when it gives them: the
    total less what is free and what this process holds."""
    for pattern in _OOM_FIGURES:
        match = pattern.search(text)
        if match:
            def gib(value: str, unit: str) -> float:
                return float(value) / {"K": 1024 ** 2, "M": 1024}.get(unit, 1)
            total = float(match.group("total"))
            held = gib(match.group("free"), match.group("fu")) + gib(match.group("this"), match.group("tu"))
            return total - held, total
    return None


# A pasted answer that no working model writes, judged by its shape, not its words, so the same test holds for any
# model and language: letters of many writing systems in one line (random token ids decoded), or a run of `!` (the
# token a float16 overflow samples, over and over). Each test reads one line (lines.py bounds it) in linear time.
# The writing systems, as (first code point, script) boundaries in code-point order: a letter belongs to the script
# of the last boundary at or below it ("" for the gaps between them).
_SCRIPT_STARTS = (
    (0x0041, "Latin"), (0x0250, ""), (0x0370, "Greek"), (0x0400, "Cyrillic"), (0x0530, "Armenian"),
    (0x0590, "Hebrew"), (0x0600, "Arabic"), (0x0700, ""), (0x0900, "Devanagari"), (0x0980, ""), (0x0E00, "Thai"),
    (0x0E80, ""), (0x1100, "Hangul"), (0x1200, ""), (0x3040, "Kana"), (0x3100, ""), (0x3130, "Hangul"),
    (0x3190, ""), (0x3400, "Han"), (0x4DC0, ""), (0x4E00, "Han"), (0xA000, ""), (0xAC00, "Hangul"), (0xD7B0, ""),
)
_STARTS = [start for start, _ in _SCRIPT_STARTS]
SALAD_SCRIPTS = 4  # a line of text in one language uses one or two scripts (CJK with Latin names: two or three)
# ... and mostly two families of them: Latin and one other (Japanese mixes Han and Kana, Korean Hangul and Han, all
# with Latin names). One line of Latin, CJK and a third (a Russian name in a Chinese question) happens; answer after
# answer like that (SALAD_LINES of them) is decoded token salad.
_FAMILIES = {"Han": "CJK", "Kana": "CJK", "Hangul": "CJK"}
SALAD_FAMILIES = 3
SALAD_LINES = 2


def scripts_of(text: str) -> set[str]:
    """The writing systems of TEXT's letters. Each distinct character is looked up once, and ASCII text is Latin at
    most: a log of plain prose makes every line a loop candidate, and looking up each character of each line made
    its scan several times slower."""
    if text.isascii():
        return {"Latin"} if any(char.isalpha() for char in text) else set()
    return {_script(char) for char in set(text)} - {""}


def three_families(text: str) -> bool:
    """Whether TEXT mixes letters of Latin, CJK and a third family of writing systems."""
    scripts = scripts_of(text)
    return len({_FAMILIES.get(script, script) for script in scripts}) >= SALAD_FAMILIES
_BANGS = re.compile(r"!{16,}")
# What a line must hold for a test here to pass, as one RE2-compatible expression (the log scanner's prefilter,
# a superset): a letter of a script besides Latin and Han (a line of four scripts has two of them), or the run.
# The ranges are widened to whole UTF-8 lead and second bytes (U+0340-07FF, U+3040-31BF, U+A000-D7FF: a few rare
# blocks more), which the automaton tells apart with fewer byte classes and states: a big log's scan is faster.
_DEGENERATE_CANDIDATE = re.compile("[\u0340-\u07ff\u0900-\u097f\u0e00-\u0e7f\u1100-\u11ff\u3040-\u31bf"
                                   "\ua000-\ud7ff]|!{16}")
# ... and for a loop: a line holding an answer field, a run of commas, or a line that opens (after marks, digits, a
# wrapper's `| `, `) ` or `] `) with sixteen plain words in a row. A log line has a colon, a slash, a digit or an
# `=` sooner; a run allowed to start at any word kept the automaton counting words through every log line's prose
# and made a big log's scan ~40% slower.
_ANSWER_CANDIDATE = re.compile(r'"(?:content|text|reasoning_content|reasoning|generated_text)": ?"|Generated text: |'
                               # a client object printed by Python (openai's ChatCompletionMessage, vLLM's
                               # CompletionOutput): the answer as the field's repr
                               r"(?:content|text|reasoning_content)='|"
                               "(?:[,\uff0c\u3001;\uff1b][.\u3002 ]?){4}|"
                               r"(?:^|[|)\]] )[^A-Za-z\n]{0,40}(?:[A-Za-z]{1,12} ){16}")


def _script(char: str) -> str:
    return _SCRIPT_STARTS[bisect_right(_STARTS, ord(char)) - 1][1] if char.isalpha() and ord(char) >= 0x41 else ""


def degenerate(text: str, loops: bool = True) -> str | None:
    """What makes TEXT an answer no working model writes, in a few words, or None. LOOPS: also a loop (only for a
    line the block scanner would build: one _ANSWER_CANDIDATE matches)."""
    if _BANGS.search(text):
        return "a run of exclamation marks (every sampled token is '!')"
    scripts = scripts_of(text)
    if len(scripts) >= SALAD_SCRIPTS:
        return f"letters of {len(scripts)} writing systems in one line ({', '.join(sorted(scripts))})"
    return looping(text) if loops else None


# The reporter's own words, where the log names nothing: a text line that is no program's log line (no level word, no
# timestamp first) and says what went wrong. An OOM with a step named (the words of an issue title: "OOM when loading
# the model", "out of memory during CUDA graph capture") places it as a traceback would; a hang or a garbled answer,
# said and nothing else found, is the symptom named as a warning. vLLM's own hints ("If you are running out of
# memory, consider ...") are log lines, and a conditional or denied OOM ("if it OOMs", "no OOM") is no report.
_LOGGED = re.compile(r"^(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b|^\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
# (OOM bounded by non-letters, not \b: in "报oom" or "OOM了" a CJK character is a word character too; RE2 has no
# lookbehind, so the neighbours are matched.)
_REPORTED_OOM = re.compile(r"(?:^|[^A-Za-z])(?:OOM|oom)(?:s|ed|ing)?(?:[^A-Za-z]|$)|"
                           r"\b(?i:out[ -]of[ -]memory)\b|显存不足|爆显存|显存溢出")  # (a title's "Out of Memory" too)
_NOT_REPORTED_OOM = re.compile(r"\b(?:[Ii]f|[Nn]o|[Nn]ot|[Ww]ithout|[Nn]ever|[Aa]void\w*|[Pp]revent\w*)\b[^.!?]{0,30}"
                               r"\b(?:OOM|(?i:out[ -]of[ -]memory))|"
                               "(?:不会|没有|避免|防止)[^\u3002\uff01\uff1f]{0,10}(?:显存不足|爆显存|显存溢出)")
# The step each category's words name, most specific first (a graph capture runs a dummy batch, as profiling does).
_REPORTED_STEPS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cudagraph_oom", re.compile(r"cuda[ -]?graph|graph[ -]captur|captur\w*(?: \w+){0,2} graphs?", re.IGNORECASE)),
    ("profile_oom", re.compile(r"\bprofil(?:e|ing)\b|profile_run|determine_(?:available_memory|num_available_blocks)|"
                               r"dummy[ _]run", re.IGNORECASE)),
    ("weights_oom", re.compile(r"\bload(?:s|ed|ing)?\b(?: \w+){0,2} (?:model|weights?|checkpoints?|shards?)\b|"
                               r"\b(?:model|weights?|checkpoint) load(?:ing)?\b|weight[- _]load\w*|load_model|"
                               r"load_weights|加载(?:模型|权重)|(?:模型|权重)加载", re.IGNORECASE)),
    ("runtime_oom", re.compile(r"\b(?:inference|serving|requests?|concurren\w*|batch(?:es)?|generat\w*|"
                               r"long (?:prompts?|contexts?|inputs?))\b|"
                               # after the server ran a while: "after running for hours", "after a few days"
                               r"\bafter (?:running|serving|working)\b|\bafter (?:\w+ ){0,2}(?:hours?|days?)\b|"
                               r"推理|并发|请求|运行(?:一段时间|几个小时|几小时)", re.IGNORECASE)),
)
# Later steps come later in a start-up: the log's own phase lines, when they reached a later step than the words
# name ("loading" said of the whole start-up), place the OOM there.
_STEP_ORDER = ("weights_oom", "profile_oom", "cudagraph_oom", "runtime_oom")
_REPORTED_HANG = re.compile(r"\b(?:[Hh]angs?|[Hh]ung|[Hh]anging|[Ss]tuck|[Ff]reez(?:e|es|ing)|[Ff]roze|[Ff]rozen|"
                            r"[Uu]nresponsive|[Dd]eadlock(?:s|ed)?)\b|卡住|卡死|无响应|没有响应|不响应|"
                            # a server that stops answering, in more words
                            r"(?i:\bstops? (?:responding|answering)\b|\bnot (?:responding|answering)\b|"
                            r"\bno response (?:from|after|for)\b|\bgets? no response\b|"
                            r"\bnever (?:returns?|responds?|answers?|comes? back)\b)|"
                            r"没有?反应|(?:一直|始终)(?:没有|不)返回|没有返回")
# Slow answers, and an answer that does not stop (troubleshoot names that unclassified, as _runaway does).
_REPORTED_SLOW = re.compile(
    r"\b(?:[Ss]low(?:s|ed|er|ly|ness|down)?|[Ss]luggish|[Ll]aggy)\b|"
    # latency called high, throughput or speed called low, in either order
    r"(?i:\b(?:high|long|huge|large|bad|terrible|poor) (?:e2e |end-to-end |inference |request |response )?"
    r"latenc(?:y|ies)\b|"
    r"\blatenc(?:y|ies) (?:is |was |are |gets? |got |becomes? |stays? )?(?:too |very |extremely |really |so |"
    r"quite )?(?:high|long|huge|bad)\b|"
    r"\b(?:low|poor|bad|terrible) (?:generation |decoding |decode |inference |output )?(?:throughput|performance|"
    r"speed)\b|"
    r"\b(?:throughput|performance|speed) (?:is |was |are |drops? |dropped |stays? |gets? |becomes? )?(?:too |very |"
    r"extremely |really |so |quite |much )?(?:low|poor|bad|terrible)\b|"
    # a rate the reporter calls small ("only 5 tokens/s", "drops to 1.5 tokens per second"), an answer that takes long
    r"\b(?:only|just|drops? to|dropped to|falls? to|fell to) (?:about |around |~)?\d+(?:\.\d+)? ?(?:tokens?|toks?|t)"
    r"(?:/s\b|/sec\b| per sec(?:ond)?\b)|\btakes? (?:forever|ages)\b|"
    r"\bt(?:akes?|aking|aken|ook) (?:about |around |over |more than |almost |~)?[1-9]\d+(?:\.\d+)? ?"
    r"(?:s|secs?|seconds|minutes?|mins?) (?:to (?:respond|answer|generate|return|finish|complete)|for (?:each|every|"
    r"one|a|the) (?:request|response|answer|reply|query))\b)|"
    # in Chinese: slow (very, too, extremely, than ...), latency high, throughput low, speed only, response time long
    r"(?:很|太|极|超|特别|非常|较|比较|越来越)慢|慢(?:了|得|接近)|变慢|速度慢|推理慢|生成慢|"
    r"延迟(?:很|太|非常)?高|吞吐量?(?:很|太|非常)?低|速度只有|响应时间(?:很|太|非常)?长")
_REPORTED_ENDLESS = re.compile(r"\b(?:never|not|n't) (?:stop|stops|end|ends|finish|finishes|terminates?)\b|"
                               r"\bnever[- ]ending\b|停不下来|不会停止|不停止")
# A time to first token called high or long, before or after its name.
_REPORTED_TTFT = re.compile(r"\b(?:[Hh]igh|[Ll]ong|[Hh]uge) (?:TTFTs?|[Tt]ime[ -]to[ -][Ff]irst[ -][Tt]oken)\b|"
                            r"\b(?:TTFTs?|[Tt]ime[ -]to[ -][Ff]irst[ -][Tt]oken) "
                            r"(?:\(|is |was |are |gets? |got |becomes? )?(?:too |very |extremely |really |so )?"
                            r"(?:long|high|slow)\b|"
                            # or given in whole seconds: "TTFT is 3 s", "the first frame response time ... is 2-5
                            # seconds" (a reporter's "first frame" is a first token)
                            r"\b(?:TTFTs?|[Tt]ime[ -]to[ -][Ff]irst[ -][Tt]oken|[Ff]irst[ -](?:token|frame)[ -]"
                            r"(?:response[ -])?(?:time|latency))\b[^.\n]{0,60}?(?: (?:is|was|of|takes?|took|around|"
                            r"about|reaches?)|:) ?(?:about |around |~)?[1-9]\d*(?:\.\d+)?(?: ?[-~] ?\d+(?:\.\d+)?)? ?"
                            r"(?:s|secs?|seconds)\b")
# "not slow", "isn't slow": the reporter denies it (a blog's "the GPU is not slow" before it names the queue).
_NOT_REPORTED_SLOW = re.compile(r"\b(?:not|n't|never|no) (?:\w+ )?(?:slow|sluggish|laggy|high|low|poor|bad)\b|"
                                r"(?i:\blow latency\b|\bhigh throughput\b)")
# The KV cache the reporter calls full (at 95-100 %, full, exhausted, the bottleneck) with requests waiting, said on
# one line: what a throughput line would show, in words. vLLM's own throughput lines (Running/Waiting counts) are
# read as figures by _KV_FULL, never as words: a percentage is a report only before the cache's name ("100% cache",
# "99% KV cache"), never after it as in vLLM's "GPU KV cache usage: 99.3%" (a big log of those lines must not
# become a candidate line by line: the block scanner passes only these words).
_REPORTED_KV_FULL = re.compile(r"(?i:\bKV[ -]?(?:cache|pool)\b(?: \w+){0,6} (?:full|fill(?:s|ed|ing)? up|exhaust\w*|"
                               r"bottleneck)\b|\b(?:100|9[5-9])(?:\.\d+)? ?% (?:KV[ -]?)?cache\b|"
                               # or after a verb: "KV cache usage接近100%", "KV cache at 99%" (vLLM's line has a colon)
                               r"\bKV[ -]?cache(?: usage)? ?(?:接近|达到|到达|超过|close to|near(?:ly)?|"
                               r"reach(?:es|ed)?|hit(?:s|ting)?|at|almost) ?(?:100|9[5-9])(?:\.\d+)? ?%)|"
                               r"KV ?[Cc]ache[^。%]{0,10}(?:占满|满了|打满)")
_REPORTED_QUEUED = re.compile(r"(?i:\b(?:requests?|reqs)\b(?: \w+){0,3} (?:wait(?:s|ing)?|queu(?:e|ed|es|ing)|"
                              r"pending)\b|\b(?:spike|pile|piling|growth|increase) (?:up )?in (?:the )?"
                              r"(?:waiting|queue|pending)\b)|排队")
_NOT_QUEUED = re.compile(r"(?i:\b(?:no|not|n't|never|without|zero) (?:\w+ ){0,2}(?:wait|queu|pend))|"
                         r"\bRunning: \d+ reqs")


def _reports_kv_full(text: str) -> bool:
    """A full KV cache and requests waiting, both on one line (three linear searches, as _reports_auth)."""
    return bool(_REPORTED_KV_FULL.search(text) and _REPORTED_QUEUED.search(text) and not _NOT_QUEUED.search(text))


# A 401 or 403 the reporter says requests get, on a line that names the key (or the refusal): a status among
# other digits (a port, a pid, a size) is no report. The block scanner passes the lines with a key word (a line
# with a bare 401 or 403 in it is common in a big log: an access log of refusals), and _reports_auth decides.
_STATUS_401 = r"(?:^|[^\d.:/-])40[13](?:$|[^\d.:%/-]|[.:](?:$|\s))"
_KEY_WORDS = r"(?:(?i:api[-_ ]?key|\bbearer\b|\btoken\b|unauthori[sz]ed|forbidden)|密钥)"
_REPORTED_STATUS = re.compile(_STATUS_401)
_REPORTED_KEY = re.compile(_KEY_WORDS)


def _reports_auth(text: str) -> bool:
    """Both on one line, in either order: two searches, each linear. Why not one expression (`key.*401|401.*key`):
    Python's `re` went back over the rest of the line from every key word, and in the block scanner's union RE2's
    automaton ran ~4x slower on a log of prose (every line a candidate) than without it."""
    return bool(_REPORTED_STATUS.search(text) and _REPORTED_KEY.search(text))


# An answer the reporter calls garbage or random (a benchmark's --random-output-len and garbage collection are not).
_GARBAGE = r"[Gg]arbage (?:[Tt]ext|[Oo]utput|[Tt]okens?|[Cc]haracters)|[Rr]andom (?:output|text|characters|tokens)\b|"
# More of the reporter's words: what the answers are called (incoherent, meaningless, corrupted, weird characters, only
# exclamation marks), an answer that loops (the same words over and over, stuck in a loop), answers' quality said to
# drop; in Chinese, answers that repeat, are a mess, or are all exclamation marks.
_GARBLED_MORE = (r"(?i:\b(?:incoherent|meaningless|unreadable|nonsensical)\b|\bcorrupt(?:ed)? (?:text|output|answers?|"
                 r"responses?|characters)\b|\b(?:weird|strange|odd|messy) (?:characters|symbols|tokens|output|text|"
                 r"code)\b|\bexclamation (?:marks?|points?)\b|\bkeeps? (?:repeating|generating the same)\b|"
                 r"\brepetitive (?:output|answers?|text|responses?|generation)\b|\bstuck in (?:a |an )?(?:loop|"
                 r"repetition|repeat)|\bthe same (?:words?|sentences?|tokens?|phrases?|text|answer|paragraph|"
                 r"content) (?:\w+ ){0,3}(?:over and over|again and again|repeatedly|endlessly)\b|"
                 r"\b(?:output|answer|response|text|result)s? (?:is|are|was|were) (?:\w+ )?(?:garbage|gibberish|messy|"
                 r"corrupted|broken)\b|\b(?:accuracy|quality) (?:\w+ ){0,2}(?:drops?|dropped|degrad\w*)\b)|"
                 r"感叹号|复读|(?:不停|一直|反复|无限)(?:地)?重复|重复(?:输出|生成|回答)|"
                 r"(?:输出|回答|回复|生成)(?:的)?(?:内容|结果)?(?:重复|混乱|错乱|乱七八糟)|")
# What the block scanner looks for of the garbled words: a superset without the words between (each `\w+` repeated
# costs the automaton states on every line of a big log).
_REPORTED_CANDIDATE = re.compile(_GARBAGE + _GARBLED_MORE + r"[Gg]arbled|[Gg]ibberish|[Jj]ibberish|[Nn]onsens|"
                                 r"[Tt]oken salad|乱码|胡言乱语|"
                                 r"(?:^| )[Rr]epeat")
_REPORTED_GARBLED = re.compile(_GARBAGE + _GARBLED_MORE + r"[Gg]arbled|[Gg]ibberish|[Jj]ibberish|[Nn]onsens|"
                               r"[Tt]oken salad|乱码|胡言乱语|"
                               r"(?:^| )[Rr]epeat\w*(?: \w+){0,2} (?:characters|symbols|tokens|glyphs|exclamation)|"
                               r"\b(?:[Oo]utput|[Aa]nswer|[Rr]esponse)s? (?:\w+ ){0,2}repeat")
# What each kind of report says, in the order they are kept.
_REPORTED_KINDS: tuple[tuple[str, Callable[[str], object]], ...] = (
    ("oom", lambda text: _REPORTED_OOM.search(text) and not _NOT_REPORTED_OOM.search(text)),
    ("hang", _REPORTED_HANG.search), ("garbled", _REPORTED_GARBLED.search),
    ("slow", lambda text: (_REPORTED_SLOW.search(text) or _REPORTED_TTFT.search(text))
     and not _NOT_REPORTED_SLOW.search(text)),
    ("endless", _REPORTED_ENDLESS.search), ("auth", _reports_auth), ("kv_full", _reports_kv_full))
# One search for all of them first: most text lines say none of these words.
_REPORTED_ANY = re.compile("|".join(f"(?:{pattern.pattern})" for pattern in (
    _REPORTED_OOM, _REPORTED_HANG, _REPORTED_CANDIDATE, _REPORTED_SLOW, _REPORTED_ENDLESS, _REPORTED_STATUS,
    _REPORTED_TTFT, _REPORTED_KV_FULL)))


# An answer caught in a loop, judged by its shape in any language: a stretch of it uses only a few distinct words
# and marks (one phrase, or a comma, over and over). Prose repeats function words too, but a window of LOOP_WINDOW
# tokens of prose has well over half of them distinct; a loop has a handful. Words are case-blind; a CJK character
# counts as a word (those scripts do not space words); marks other than punctuation (table rules, bars) do not count.
_LOOP_TOKEN = re.compile("[^\\W\\d_]{1,40}|\\d{1,20}|"
                         "[,.;:!?\"'()\uff0c\u3002\u3001\uff1b\uff1a\uff01\uff1f\uff08\uff09]")
LOOP_TOKENS = 24  # fewer tokens than this say nothing about a loop
LOOP_WINDOW = 80
LOOP_DISTINCT = 0.35  # at most this share of a window's tokens distinct: a loop
LOOP_WORDS = 3


def _loop_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for token in _LOOP_TOKEN.findall(_ESCAPE.sub(" ", text[:4 * MAX_ANSWER_CHARS])):
        if token[0].isalpha() and any(ord(char) >= 0x2E80 for char in token):
            tokens.extend(token)  # CJK: one character a word
        else:
            tokens.append(token.lower())
        if len(tokens) >= LOOP_WINDOW:
            break
    return tokens[:LOOP_WINDOW]


# ... or line by line: an answer whose lines (real line breaks, or the escapes of a quoted answer) are one line over
# and over, whatever it holds (a word, a glyph, a table row): LOOP_LINES lines at least, LOOP_SAME_LINE of them one.
_ESCAPE = re.compile(r"\\[nrt]")
_LINE_BREAK = re.compile(r"\\n|\n")
LOOP_LINES = 12
LOOP_SAME_LINE = 0.8


def _repeated_line(text: str) -> str | None:
    lines = [part.strip() for part in _LINE_BREAK.split(text[:4 * MAX_ANSWER_CHARS]) if part.strip()]
    if len(lines) < LOOP_LINES:
        return None
    (top, count), = Counter(lines).most_common(1)  # linear; ties go to the line seen first
    if count < LOOP_SAME_LINE * len(lines):
        return None
    return f"{len(lines)} lines, {count} of them the same ('{top[:40]}'): a loop"


def looping(text: str) -> str | None:
    """What shows that TEXT is a loop (a phrase or a mark repeated over and over), or None."""
    tokens = _loop_tokens(text)
    words = [token for token in tokens if token[0].isalpha()]
    if len(tokens) < LOOP_TOKENS or len(words) < LOOP_WORDS:
        return _repeated_line(text)
    counts = Counter(tokens)
    distinct = len(counts)
    if distinct > LOOP_DISTINCT * len(tokens):
        return None
    (top, count), = counts.most_common(1)
    return f"{len(tokens)} words and marks with only {distinct} distinct ('{top}' {count} times): a loop"


# Where a paste holds an answer: an OpenAI response's or stream chunk's text field, the offline example's print.
MAX_ANSWER_CHARS = 4000
_ANSWER_FIELD = re.compile(r'"(?:content|text|reasoning_content|reasoning|generated_text)": ?"'
                           r'(?P<value>(?:[^"\\]|\\.){1,4000})')
_GENERATED_TEXT = re.compile(r"\bGenerated text: ?(?P<value>.{1,4000})")
_ANSWER_REPR = re.compile(r"\b(?:content|text|reasoning_content)='(?P<value>(?:[^'\\]|\\.){1,4000})")


# A response's answer (a chat message's or a stream delta's content, not a request's messages) that opens with the
# model's reasoning: the server split no reasoning off (no --reasoning-parser, or one that does not split this model's).
_REASONING_IN_CONTENT = re.compile(r'"(?:message|delta)": ?\{[^{}]{0,80}"content": ?"(?:\\n|\s){0,4}<think>')
# The opposite: a whole (non-streamed) response whose message holds reasoning and an empty content, its lines as a
# paste prints them (one line of JSON, or one field a line): the server's reasoning parser filed the answer as
# reasoning (deepseek_r1 with Qwen3's thinking turned off waits for a </think> that never comes).
_MESSAGE_OPEN = re.compile(r'"message": ?\{')
_REASONING_VALUE = re.compile(r'"reasoning(?:_content)?": ?"[^"\s]')
_EMPTY_CONTENT = re.compile(r'"content": ?(?:null|""(?:[,}\s]|$))')
MESSAGE_LINES = 8  # a pretty-printed message's fields, from its `"message": {` line


def answers(body: str) -> list[str]:
    """The answer texts a line quotes (JSON fields, `Generated text:`), else the line itself."""
    values = [match.group("value") for match in _ANSWER_FIELD.finditer(body)]
    values += [match.group("value") for match in _ANSWER_REPR.finditer(body)]
    generated = _GENERATED_TEXT.search(body)
    if generated:
        values.append(generated.group("value"))
    return values or [body]


# An answer that did not stop where it should have (troubleshoot's vocabulary has no cause for it: it is reported
# as unclassified, with what shows it): the model writing its chat template's turn markers or a new user turn (it
# went on past the end of its turn), generation cut by max_tokens, or nothing but whitespace escapes line after line.
_TURN_MARKER = re.compile(r"\\?<\|(?:im_start|im_end|eot_id|end_of_text|endoftext|start_header_id|end_header_id|"
                          r"system|user|assistant|end)\|\\?>")
# A marker quoted alone (a chat template's source) or after a prompt's key (the request's prompt): not an answer's.
_QUOTED_MARKER = re.compile(r"['\"]\\?<\|\w{2,20}\|\\?>|\bprompt\b['\"]?\s{0,2}[:=]")
_NEW_TURN = re.compile(r"^(?:Question|Human|User): \S")
_LENGTH_STOP = re.compile(r'"finish_reason": ?"length"|\bfinish_reason=length\b')
_ESCAPES_ONLY = re.compile(r"^[ \t]*(?:\\[nrt][ \t,]{0,4}){1,8}$")
# What a line must hold for _runaway to act on it (the prefilter's superset of the four: no word boundaries, no
# leading run of blanks, no `\S`, which each cost the big-log scan more automaton states).
_RUNAWAY_CANDIDATE = re.compile(r"<\|(?:im_start|im_end|eot_id|end_of_text|endoftext|start_header_id|end_header_id|"
                                r"system|user|assistant|end)\|"
                                r'|finish_reason(?:": ?"|=)length|'
                                r"(?:Question|Human|User): |\\[nrt][ \t,]{0,4}$")
NEW_TURNS = 2
ESCAPE_LINES = 4
_RUNAWAY_FIX = ("the model did not stop at the end of its answer: serve an instruct (chat) model, not a base model; "
                "check that the chat template and the generation config's eos_token_id / stop tokens are the "
                "model's own (a fine-tune or a GGUF can lose them), or pass `stop` / `stop_token_ids`; set max_tokens "
                "so a runaway answer ends early")


# The first words of vLLM's long messages: a terminal that wrapped one leaves no raw line the whole rule
# matches, so the scanner finds the head and lines.py joins the rest to it.
_MESSAGE_HEADS = re.compile(r"User-specified max_model_len|To serve at least one request|"
                            r"maximum context length is|is longer than the maximum model length|"
                            r"Free memory on device|No available memory for the cache")


def _candidate_pattern() -> BytesPattern:
    """One expression that matches every line the classifier could act on (a superset: feed decides),
    except request and access-log lines, which only say "serving" (see SERVED).

    Anchors at a line's start are dropped (the wrappers lines.py strips may stand before it); names of
    groups are dropped (alternatives may share them); a case-blind pattern stays case-blind inside.
    Compiled with RE2 where google-re2 is installed (a dependency; Python's `re` otherwise, slower)."""
    patterns = [rule.pattern for rule in RULES] + [pattern for _, pattern in _PHASE_PATTERNS]
    patterns += [_OOM, _NEW_BOOT, re.compile(r", line \d+, in "), _TRACEBACK_START, _CHAIN_HEADER,
                 _MODEL_NOT_GENERATIVE.pattern,
                 _NO_PROGRESS, _KV_FULL, _NOTHING_ADMITTED, _CLIENT_RETRY, _IPYTHON_FRAME, _MESSAGE_HEADS,
                 _ERROR_LINE, _OTHER_ERROR_LINE, re.compile(r"validation error for"), _RPC, _SHM_WAIT, _MAX_LEN,
                 _BLOCKS, _CLIENT_ABORT, _TTFT_HEAD, _TTFT_MEAN, _DEGENERATE_CANDIDATE,
                 _ACCESS_NOT_SERVED, _ANSWER_CANDIDATE, _RUNAWAY_CANDIDATE, _MESSAGE_OPEN, _EMPTY_CONTENT,
                 _KV_ROOM, _BOOT, _DIED_SERVING, _SLOW, _QUEUED, _BAR_ENDS, _BENCH_CANDIDATE,
                 _REPORTED_OOM, _REPORTED_HANG, _REPORTED_CANDIDATE, _REPORTED_SLOW, _REPORTED_ENDLESS,
                 _REPORTED_KEY,  # its key words: _reports_auth decides
                 _REPORTED_TTFT, _REPORTED_KV_FULL,  # _reports_kv_full decides (the waiting words too)
                 re.compile(r"(?:Error|Exception|Exit|Timeout|Fault)(?:\(\d+\))?(?::|$)"),
                 re.compile(r"Fatal Python error|Segmentation fault|core dumped|SIGSEGV|SIGABRT|NCCL error|"
                            r"CUDA error|undefined symbol: |Failed to import from vllm\._C|Symbol not found: ")]
    parts = []
    for pattern in patterns:
        source = re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern).removeprefix("^")
        source = source.replace("(?!out of memory)", "")  # RE2 has no lookahead: the superset is fine
        parts.append(f"(?i:{source})" if pattern.flags & re.IGNORECASE else f"(?:{source})")
    return compile_scanner(("(?m)" + "|".join(parts)).encode())


CANDIDATE = _candidate_pattern()

# Printable ASCII and tabs: text on which RE2 and Python's `re` agree for every rule (RE2's \w, \d, \s and \b are
# ASCII where Python's are Unicode-aware, and Python's `$` also matches before a final newline).
_RE2_AGREES = re.compile(r"[^\t\x20-\x7e]")


def _rules_pattern() -> re.Pattern[str] | None:
    """One RE2 expression that matches wherever some rule does, so that a line no rule names costs one pass
    over it, not one per rule. Why: in a log of plain prose every line is a loop candidate, and the rules
    alone took ~1.4 ms per logical line (~2,000 characters), 2.5 s per MB. None without google-re2, or where
    a rule cannot be written in RE2 (the rules are then always tried one by one)."""
    try:
        import re2
    except ImportError:
        return None
    parts = []
    for rule in RULES:
        if rule.pattern.flags & ~(re.UNICODE | re.IGNORECASE):
            return None
        source = re.sub(r"\(\?P<\w+>", "(?:", rule.pattern.pattern)  # alternatives may share group names
        parts.append(f"(?i:{source})" if rule.pattern.flags & re.IGNORECASE else f"(?:{source})")
    options = re2.Options()
    options.log_errors = False  # a rule RE2 cannot read is not an error: the rules are tried one by one
    options.max_mem = RE2_MAX_MEM  # the scanners' budget: past it the DFA would fall back silently (no log)
    try:
        return cast("re.Pattern[str]", re2.compile("|".join(parts), options))
    except re2.error:
        return None


_ANY_RULE = _rules_pattern()


def _in_re2(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """PATTERN compiled by RE2 too (linear, and one pass whatever its alternatives), for text on which the two agree
    (`_RE2_AGREES`); None without google-re2 or where RE2 cannot read it. Why: the reporter's words are many
    case-blind alternatives, ~0.7 µs a character in Python's `re` on every line of prose (10 ms a 4 KiB line)."""
    try:
        import re2
    except ImportError:
        return None
    options = re2.Options()
    options.log_errors = False
    options.max_mem = RE2_MAX_MEM
    try:
        return cast("re.Pattern[str]", re2.compile(re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern), options))
    except re2.error:
        return None


_REPORTED_ANY_RE2 = _in_re2(_REPORTED_ANY)
# Request-log and access-log lines: evidence of serving, never of anything else. uvicorn's access line is known by
# its head too (`INFO:     host:port - "`), as _ACCESS_LOG knows it: a paste cut inside the line keeps only that.
SERVED = re.compile(rb' HTTP/1\.[01]" \d{3}|\] (?:Received|Added) request |INFO:\s{1,16}\S{1,64} - "')
_SERVED_TEXT = re.compile(SERVED.pattern.decode())
_ACCESS_AUTH = re.compile(r' HTTP/1\.[01]" 40[13]\b')


def quote(line: str) -> str:
    return line if len(line) <= 300 else line[:297] + "..."


_AT_LINE = re.compile(r"\bline (\d{1,12})$")


def _line_number(finding: Finding) -> int:
    """The log line a finding's first evidence stands on (0 where it is not a log line)."""
    where = _AT_LINE.search(finding.evidence[0].source) if finding.evidence else None
    return int(where.group(1)) if where else 0


def _evidence(line: LogLine, text: str) -> tuple[Evidence, ...]:
    return (Evidence(f"log line {line.number}", quote(text)),)


@dataclass
class _Traceback:
    """One traceback as it is read: its frames (file, function; an RPC's name with no file), where it began."""

    first: LogLine
    phase: Phase
    serving: bool
    frames: list[tuple[str, str]] = field(default_factory=list)
    # Python's chain header came before it ("The above exception was the direct cause of the following
    # exception", "During handling of the above exception"): a later link of an exception already shown.
    chained: bool = False

    @property
    def process(self) -> str:
        return self.first.process


@dataclass
class LogClassifier:
    """Feed it a log's lines in order; it tracks the phase and collects findings, most specific first.

    What it reads, strongest first: an exception's type and message and the traceback frames above it
    (what vLLM was doing: loading weights, profiling, capturing CUDA graphs, serving); the numbers in a
    message (memory free against requested, max_model_len against what the KV cache holds); the last
    start-up phase the log reached; and last, vLLM's own wording. An error line no rule explains is still
    a finding (`unclassified`), quoted, never silence.

    `startup_only` is the supervisor's mode: once the server serves, only engine death and stalls count.
    """

    flags: Flags = field(default_factory=dict)
    startup_only: bool = False
    phase: Phase = Phase.LAUNCHING
    serving: bool = False
    _frames: list[str] = field(default_factory=list)
    _traceback: _Traceback | None = None  # the one being read: frames seen, its exception line not yet
    _last_frames: list[tuple[str, str]] = field(default_factory=list)  # of the traceback read last
    _cuts: list[_Traceback] = field(default_factory=list)  # the last tracebacks that ended without an exception line
    _saw_traceback: bool = False  # any traceback at all, in any process
    _chain_header: bool = False  # Python's chain header was the last traceback text read: the next one is chained
    # Each vLLM process prints its own tracebacks, interleaved with the others' in one log: the traceback state
    # above is the current process's; the others' wait here, by the name in their tag.
    _process: str = ""
    _parked: dict[str, tuple[_Traceback | None, list[tuple[str, str]], list[str]]] = field(default_factory=dict)
    _no_progress: tuple[LogLine, str] | None = None  # the first throughput line with no progress
    _no_progress_lines: int = 0
    _last_no_progress: tuple[LogLine, str] | None = None  # the latest of them
    _stuck_bar: tuple[LogLine, str, int] | None = None  # a progress bar at 0/N, and the progress seen then
    _slow_lines: int = 0  # throughput lines with under a token a second in all while requests ran
    _queued_lines: int = 0  # throughput lines with at most one request running and more waiting
    _progress: int = 0  # phase lines and served requests seen: what a stall must not be followed by
    _shm_wait: tuple[LogLine, str, int] | None = None
    _shm_wait_serving: bool = False  # the first wait came after the server served (a stall), not at start-up
    _client_retries: int = 0
    _unplaced_oom: list[tuple[str, str]] = field(default_factory=list)  # OOM findings no phase placed yet
    _boot: bool = False  # the log shows a start-up from its launch, or vLLM said one failed
    _died_serving: bool = False  # the API server said its engine died (in service)
    _executing: bool = False  # vLLM said a model execution failed (V0's execute_model wrapper)
    _error_line: tuple[LogLine, str] | None = None  # the first logger ERROR line no rule explained
    _asgi: bool = False  # the line before said the HTTP server failed a request: its traceback follows
    _new_turns: int = 0  # pasted lines that open a new user turn (`Question: ...`): an answer that went on
    _escape_lines: int = 0  # pasted lines of nothing but whitespace escapes
    _salad_lines: int = 0  # pasted lines that mix Latin, CJK and a third family of writing systems
    # A pasted chat response's message: the lines its `"message": {`, a non-empty reasoning and an empty content were
    # on (_answer_in_reasoning), and whether that was said
    _message_at: int = -1_000
    _reasoning_at: int = -1_000
    _empty_content_at: int = -1_000
    _said_reasoning_only: bool = False
    _ttft_lines: int = 0  # lines left under a first-token-latency heading to find its mean in
    _salad_scripts: set[str] = field(default_factory=set)  # the writing systems of pasted lines beyond Latin and Han
    _bench: dict[str, float] = field(default_factory=dict)  # a benchmark summary's figures read so far
    _reported: dict[str, tuple[LogLine, str]] = field(default_factory=dict)  # the reporter's words: oom, hang, garbled
    _max_len: int | None = None
    _kv_room: bool | None = None  # vLLM's figures said the KV cache has room for blocks (or none)
    _block_size: int = BLOCK_TOKENS
    _found: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def feed(self, line: LogLine) -> Phase | None:
        """Take one normalised line; return the new phase when it moved forward, else None."""
        if line.served_before:
            self._served()
        text = line.text.strip()
        if not text:
            return None
        if _REQUEST_LOG.match(text) or _ACCESS_LOG.match(text) or _SERVED_TEXT.search(text):
            self._served()
            self._asgi = bool(_ASGI_EXCEPTION.search(text))  # a 500's access line, the server's traceback glued on
            if _ACCESS_AUTH.search(text) and not _REQUEST_LOG.match(text) and not self.startup_only:
                self._add(Finding("auth", "warning", "requests were refused for their API key (HTTP 401/403)",
                                  _evidence(line, text), RULES_BY_CATEGORY["auth"].fix(_NO_MATCH, self.flags),
                                  rank=UNCLASSIFIED_RANK))
            if _MALFORMED_PATH.search(text) and not _REQUEST_LOG.match(text) and not self.startup_only:
                rule = _MALFORMED_PATH_RULE
                self._add(Finding(rule.category, rule.severity, rule.title, _evidence(line, text), _MALFORMED_PATH_FIX,
                                  rank=_RANKS[id(rule)]))
            elif _ACCESS_NOT_SERVED.search(text) and not _REQUEST_LOG.match(text) and not self.startup_only:
                self._add(Finding("unclassified", "warning", "requests were answered 404: a route or model the server "
                                  "does not serve", _evidence(line, text), _NOT_SERVED_FIX, rank=UNCLASSIFIED_RANK))
            return None
        if self.serving and _NEW_BOOT.search(text):
            self.serving, self.phase = False, Phase.LAUNCHING
        if line.process != self._process:
            self._switch(line.process)
        self._track_traceback(line, text)
        self._match(line, text)
        for phase, pattern in _PHASE_PATTERNS:
            if pattern.search(text):
                self._progress += 1
                if _PHASE_ORDER.index(phase) > _PHASE_ORDER.index(self.phase):
                    self.phase = phase
                    return phase
                return None
        return None

    def _served(self) -> None:
        if not self.serving:
            self._progress += 1
        self.serving = True

    def _track_traceback(self, line: LogLine, text: str) -> None:
        body = _LOGGER_PREFIX.sub("", text, count=1)
        if _CHAIN_HEADER.search(body):
            self._chain_header = True
            return
        if _TRACEBACK_START.search(body):
            self._close_cut()
            self._traceback = _Traceback(line, self.phase, self.serving, chained=self._chain_header)
            self._chain_header = False
            self._saw_traceback = True
            self._frames, self._last_frames = [], self._traceback.frames
            if self._asgi or _ASGI_EXCEPTION.search(body):
                self._traceback.frames.append((SERVER, ""))
            self._asgi = False
            return
        asgi, self._asgi = self._asgi, bool(_ASGI_EXCEPTION.search(body))
        frame = _FRAME.search(body) or _IPYTHON_FRAME.match(body)
        rpc = None if frame else _RPC.search(body)
        if frame or rpc:
            if self._traceback is None:  # an excerpt that starts inside a traceback
                self._traceback = _Traceback(line, self.phase, self.serving)
                self._saw_traceback = True
                self._frames, self._last_frames = [], self._traceback.frames
                if asgi:
                    self._traceback.frames.append((SERVER, ""))
            # IPython names a method with its class (`CacheEngine._allocate_kv_cache`): the function is what counts
            entry = (frame.group("file"), frame.group("func").rsplit(".", 1)[-1]) if frame else \
                ("", rpc.group("method") if rpc else "")
            self._traceback.frames.append(entry)
            if frame and line.code:
                self._traceback.frames += code_frames(line.code)
            del self._traceback.frames[:-64]  # a deep traceback keeps its innermost frames
            self._frames.append(entry[1])
            del self._frames[:-64]

    def _switch(self, process: str) -> None:
        """Read PROCESS's lines next: park the current process's traceback state, take up PROCESS's."""
        self._parked[self._process] = (self._traceback, self._last_frames, self._frames)
        if len(self._parked) > _MAX_PROCESSES:  # a bound: the oldest process's open traceback is closed as cut
            oldest = next(iter(self._parked))
            parked = self._parked.pop(oldest)[0]
            if parked is not None and parked.frames:
                self._cuts = [*self._cuts[-(_MAX_CUTS - 1):], parked]
        self._traceback, self._last_frames, self._frames = self._parked.pop(process, (None, [], []))
        self._process = process

    def _close_cut(self) -> None:
        """The traceback being read ended without an exception line (a paste cut it, or a second began)."""
        if self._traceback is not None and self._traceback.frames:
            self._cuts = [*self._cuts[-(_MAX_CUTS - 1):], self._traceback]
        self._traceback = None

    def _match(self, line: LogLine, text: str) -> None:
        startup_evidence = not self.serving
        if self.startup_only and not startup_evidence:
            return
        body = _LOGGER_PREFIX.sub("", text, count=1)
        exception = _EXCEPTION_LINE.match(body)
        if exception and not _FRAME.search(body):
            self._traceback = None  # its exception line closes a traceback
        self._facts(line, text)
        if self._rules(line, text, startup_evidence) or (line.spaced and
                                                          self._rules(line, line.spaced, startup_evidence)):
            pass
        elif _OOM.search(text):
            self._oom(line, text)
        elif self._throughput(line, text) or self._numbers(line, text) or self._first_token(line, text) or \
                self._benchmark(line, text):
            pass
        elif _SHM_WAIT.search(text):
            if self._shm_wait is None:
                self._shm_wait, self._shm_wait_serving = (line, text, self._progress), self.serving
        elif _CLIENT_RETRY.search(text) and not self.startup_only:
            self._client_retry(line, text)
        elif _CLIENT_ABORT.search(text) and not self.startup_only:
            self._client_abort(line, text)
        elif startup_evidence and self.phase is Phase.WARMUP and _ERROR_LINE.match(text) and not exception:
            # A fallback for excerpts that lost the exception: as generic as "the engine died".
            self._add(Finding("cudagraph_oom", "error", "the start-up failed while capturing CUDA graphs",
                              _evidence(line, text), _OOM_FIXES["cudagraph_oom"], rank=UNCLASSIFIED_RANK))
        else:
            self._named_or_not(line, text, body, exception, startup_evidence)

    def _facts(self, line: LogLine, text: str) -> None:
        """What a line says that only decides a cause later: a start-up seen from its launch, an engine that died
        in service, the room vLLM gave the KV cache."""
        if not self.serving and _BOOT.search(text):
            self._boot = True
        if _DIED_SERVING.search(text):
            self._died_serving = True
        if _IN_EXECUTION.search(text):
            self._executing = True
        bar = _PROMPTS_BAR.search(text)
        if bar and bar.group("done") == "0":
            self._stuck_bar = self._stuck_bar or (line, text, self._progress)
        elif bar:
            self._progress += 1
        room = _KV_ROOM.search(text)
        if room:
            figure = room.group("gib") or room.group("blocks") or room.group("tokens").replace(",", "")
            self._kv_room = float(figure) > 0

    def _client_retry(self, line: LogLine, text: str) -> None:
        self._client_retries += 1
        self._add(Finding("client_timeout", "warning", "the client sent requests again after they failed",
                          _evidence(line, text), "the openai client retries a request that timed out, lost its "
                          "connection or was answered 429/5xx: raise its timeout (openai: `timeout=`) above the "
                          "longest answer, or cap max_tokens; if the server log shows errors at that time, fix "
                          "those first", retryable=True, rank=UNCLASSIFIED_RANK))

    def _client_abort(self, line: LogLine, text: str) -> None:
        self._add(Finding("client_timeout", "warning", "the client closed requests before their answers ended",
                          _evidence(line, text), "vLLM aborts a request when its client disconnects: a client "
                          "read timeout shorter than the answer (raise it, or cap max_tokens), a proxy's idle "
                          "cut, or a user's cancel; compare the client's timeout with `qwenops status` TPOT x "
                          "max_tokens", rank=UNCLASSIFIED_RANK))
        self._add(Finding("stream_interrupted", "info", "or a proxy cut the streams (the server saw the client go)",
                          _evidence(line, text), "check a proxy's read/idle timeout between client and server",
                          rank=UNCLASSIFIED_RANK + 1))

    def _named_or_not(self, line: LogLine, text: str, body: str, exception: re.Match[str] | None,
                      startup_evidence: bool) -> None:
        tasks = _MODEL_NOT_GENERATIVE.pattern.search(text)
        if tasks and startup_evidence and "'generate'" not in tasks.group("tasks"):
            rule = _MODEL_NOT_GENERATIVE
            self._add(Finding(rule.category, "error", rule.title, _evidence(line, text), rule.fix(tasks, self.flags),
                              rank=-1))
            return
        if self.startup_only:
            return
        if not exception and not _FRAME.search(body):
            self._reporter_words(line, text)
            texts = answers(body)
            loops = bool(_ANSWER_CANDIDATE.search(text) or (line.spaced and _ANSWER_CANDIDATE.search(line.spaced)))
            what = next(filter(None, (degenerate(answer, loops) for answer in texts)), None)
            salad_line = what is None and bool(_DEGENERATE_CANDIDATE.search(text)) and not _LOGGED.match(text)
            if salad_line:
                # Token salad spreads over an answer's lines: each may show two or three scripts, the answer many.
                # Only lines the block scanner builds count (a script beyond Latin and Han), so both readers agree.
                self._salad_scripts |= scripts_of(text)
            if what is None and any(map(three_families, texts)):
                self._salad_lines += 1
                if self._salad_lines >= SALAD_LINES:
                    what = f"{self._salad_lines} lines that each mix Latin, CJK and a third writing system"
            if salad_line and self._salad_lines and len(self._salad_scripts) >= SALAD_SCRIPTS:
                what = (f"a line mixing Latin, CJK and a third writing system, and letters of "
                        f"{len(self._salad_scripts)} writing systems across the pasted lines "
                        f"({', '.join(sorted(self._salad_scripts))})")
            if what is None and self._answer_in_reasoning(line, text, body):
                return
            if what is None and _REASONING_IN_CONTENT.search(body):
                self._add(Finding("incoherent_output", "warning",
                                  "the answer's content carries the model's reasoning (it opens with <think>)",
                                  _evidence(line, text), _REASONING_FIX, rank=len(RULES)))
                return
            if what:
                self._add(Finding("incoherent_output", "warning", "a pasted answer is text no working model writes",
                                  _evidence(line, text), _DEGENERATE_FIX.format(what=what), rank=len(RULES)))
                return
            if self._runaway(line, text, body):
                return
        self._unexplained(line, text, body, exception)

    def _answer_in_reasoning(self, line: LogLine, text: str, body: str) -> bool:
        """Whether this line completes a response message that holds reasoning and an empty content (said once)."""
        if _MESSAGE_OPEN.search(body):
            self._message_at = line.number
        if _REASONING_VALUE.search(body):
            self._reasoning_at = line.number
        if _EMPTY_CONTENT.search(body):
            self._empty_content_at = line.number
        if self._said_reasoning_only or self._message_at < 0 \
                or not self._message_at <= min(self._reasoning_at, self._empty_content_at) \
                or max(self._reasoning_at, self._empty_content_at) - self._message_at > MESSAGE_LINES:
            return False
        self._said_reasoning_only = True
        self._add(Finding("incoherent_output", "warning",
                          "the answer came back whole as reasoning_content; its content is empty",
                          _evidence(line, text), _ANSWER_IN_REASONING_FIX, rank=len(RULES)))
        return True

    def _reporter_words(self, line: LogLine, text: str) -> None:
        """Keep the first text line in the reporter's words that says the server ran out of memory, hung, answered
        garbage, answered slowly or did not stop: judged at the end, where the log names nothing better."""
        reports = _REPORTED_ANY_RE2 if _REPORTED_ANY_RE2 is not None and not _RE2_AGREES.search(text) else _REPORTED_ANY
        if _LOGGED.match(text) or not reports.search(text):
            return
        for kind, says in _REPORTED_KINDS:
            if kind not in self._reported and says(text):
                self._reported[kind] = (line, text)

    def _reported_oom(self, found: dict[tuple[str, str], Finding]) -> None:
        """The OOM the reporter's words describe, where the log names no cause but the engine's death: at the step
        they name, or the later step the log's phase lines reached; nothing when neither places it."""
        if "oom" not in self._reported or self.startup_only or \
                any(f.severity == "error" and f.rank < GENERIC_RANK for f in found.values()):
            return
        line, text = self._reported["oom"]
        said = next((category for category, step in _REPORTED_STEPS if step.search(text)), None)
        reached = "runtime_oom" if self.serving else _PHASE_OOM.get(self.phase)
        # ... or the step the log's last traceback was in (its frames: the engine's step while serving, say)
        where = frame_phase(self._last_frames) if self._last_frames else None
        framed = "runtime_oom" if where in ("serving", "forward") else _FRAME_OOM.get(where) if where else None
        steps = [step for step in (said, reached, framed) if step in _STEP_ORDER]
        if steps:
            category = max(steps, key=_STEP_ORDER.index)
            found[(category, _OOM_TITLES[category])] = Finding(
                category, "error", f"{_OOM_TITLES[category]} (in the reporter's words; the log's own error line is "
                f"not in it)", _evidence(line, text), _OOM_FIXES[category], retryable=category == "runtime_oom",
                rank=UNCLASSIFIED_RANK - 1)

    def _benchmark(self, line: LogLine, text: str) -> bool:
        """A benchmark summary's figures: at its request throughput, a run BENCH_SLOWER times longer than its
        requests took to arrive (and a minute at least) is answers that came late: a queue, or slow answers."""
        figure = _BENCH_FIGURE.match(text)
        if not figure:
            return False
        key = next(name for name in ("done", "rate", "took", "end") if figure.group(name))
        self._bench[key] = float(figure.group("value"))
        done, rate, took = (self._bench.get(name) for name in ("done", "rate", "took"))
        if key == "end" and done and rate and took and math.isfinite(rate) and \
                took >= max(BENCH_SECONDS, BENCH_SLOWER * done / rate):
            self._add(Finding(
                "high_latency", "warning", "a benchmark ran many times longer than its requests took to arrive",
                _evidence(line, text), f"{done:g} requests sent at {rate:g}/s arrive in {done / rate:.0f} s, but the "
                f"run took {took:.0f} s: requests waited or answered slowly (more offered than max_num_seqs and the "
                "KV cache admit, or long answers on slow hardware): lower the request rate or concurrency, or raise "
                "max_num_seqs / gpu_memory_utilization; the TTFT rows say how long they waited", rank=len(RULES)))
        return True

    def _runaway(self, line: LogLine, text: str, body: str) -> bool:
        """An answer that did not stop at the end of its turn: outside troubleshoot's vocabulary, so unclassified,
        a warning, with what shows it."""
        if _TURN_MARKER.search(body) and not _QUOTED_MARKER.search(body):
            title = "the answer went on past the end of its turn (it wrote its chat template's turn markers)"
        elif _LENGTH_STOP.search(body):
            title = "the answer stopped only at max_tokens (finish_reason \"length\"), not at the end of its turn"
        elif _NEW_TURN.match(body):
            self._new_turns += 1
            if self._new_turns < NEW_TURNS:
                return True
            title = "the answer went on to write the next question itself"
        elif _ESCAPES_ONLY.match(body):
            self._escape_lines += 1
            if self._escape_lines < ESCAPE_LINES:
                return True
            title = "the answer went on as whitespace, line after line"
        else:
            return False
        self._add(Finding("unclassified", "warning", title, _evidence(line, text), _RUNAWAY_FIX,
                          rank=UNCLASSIFIED_RANK + 1))
        return True

    def _unexplained(self, line: LogLine, text: str, body: str, exception: re.Match[str] | None) -> None:
        """A line no rule names: an exception or a crash is an `unclassified` error at once; a logger ERROR line
        is kept, and reported only when nothing else in the log is an error."""
        crash = _CRASH.search(body)
        if crash and _DEVICE_FAULT.search(crash.group(0)) and (self.serving or self._died_serving or self._executing):
            # A device or collective fault while the engine ran the model (in service, or in an execution vLLM
            # reports as failed), raised or logged: the engine died of it; its kernel's bug is in the quoted line.
            rule = RULES_BY_CATEGORY["engine_dead"]
            self._add(Finding("engine_dead", "error", "the engine died of a device fault while it ran the model",
                              _evidence(line, body), "the engine cannot go on after " + crash.group(0).strip() +
                              ": restart the server; if it recurs with the same model and flags, try --enforce-eager "
                              "or another attention backend, disable custom all-reduce for a collective's fault, "
                              "and search vLLM's issues for the quoted line", retryable=True, rank=_RANKS[id(rule)]))
            return
        if exception and _benign_frames(self._last_frames):
            return
        if exception and not _BENIGN_EXCEPTIONS.search(exception.group("type")):
            if exception.group("type").endswith(("TimeoutError", "Timeout")) and self._last_frames \
                    and frame_phase(self._last_frames) == "wait":
                self._add(Finding("engine_stalled", "error", "a worker did not answer the engine in time",
                                  _evidence(line, body), _STALLED_WORKER_FIX, retryable=True,
                                  rank=_RANKS[id(RULES_BY_CATEGORY["engine_stalled"])]))
                return
            if self.serving and self._last_frames and frame_phase(self._last_frames) is None \
                    and _streamed(self._last_frames):
                self._add(self._stream_failed(_evidence(line, body)))
                return
            self._unclassified(line, body, exception.group("type"))
            return
        if crash:
            broken = "ymbol" in crash.group(0) or "vllm._C" in crash.group(0)
            self._unclassified(line, body, "a compiled extension built for another torch: a broken install"
                               if broken else "a crash")
            return
        if (_ERROR_LINE.match(text) or _OTHER_ERROR_LINE.search(text)) and self._error_line is None \
                and not _FRAME.search(body) and not body.startswith((" ", "Traceback")):
            self._error_line = (line, text)

    def _rules(self, line: LogLine, text: str, startup_evidence: bool) -> bool:
        if _ANY_RULE is not None and not _RE2_AGREES.search(text) and not _ANY_RULE.search(text):
            return False
        for rule in RULES:
            if rule.when == "startup" and not startup_evidence:
                continue
            match = rule.pattern.search(text)
            if match:
                moved = self._whose(rule.category, line)
                category, title = moved or (rule.category, rule.title)
                fix = rule.fix(match, self.flags) if moved is None or category not in _MOVED_FIXES \
                    else _MOVED_FIXES[category]
                home = rule if moved is None else RULES_BY_CATEGORY.get(category, rule)
                rank = _RANKS[id(home)]
                self._add(Finding(category, "error" if moved else rule.severity, title, _evidence(line, text), fix,
                                  rule.retryable, rank, change=rule.change(match) if rule.change else None))
                return True
        return False

    @staticmethod
    def _fetching(process: str, frames: list[tuple[str, str]]) -> bool:
        """Whether an HTTP client's error is vLLM's API server fetching a request's media: the process that
        printed it is vLLM's API server (which downloads images and videos), and not its HTTP server's frames
        (a client that went away mid-request shows there)."""
        if (SERVER, "") in frames:  # the HTTP server's traceback: a client library in it made a request of its own
            return any(_CLIENT_LIBRARY_FILE.search(file) for file, _ in frames)
        return process.lower().startswith("apiserver") and not any(_HTTP_SERVER_FILE.search(file) for file, _ in frames)

    def _whose(self, category: str, line: LogLine) -> tuple[str, str] | None:
        """A client library's error that vLLM's own process raised, or under vLLM's own frames, is not a
        client's: a connection cut while vLLM fetched a request's media, a timeout while its executor waited
        for a worker. (category, title) when it moves, else None."""
        where = frame_phase(self._last_frames) if self._last_frames else None
        if category in _CLIENT_SIDE and (where == "media" or self._fetching(line.process, self._last_frames)):
            return "media_fetch_error", "vLLM could not download a request's image or media"
        if category == "client_timeout" and where == "wait":
            return "engine_stalled", "a worker did not answer the engine in time"
        # vLLM warms the sampler up twice: in the profiling run, and after the KV cache and CUDA graphs (the
        # post-capture warm-up, compile_or_warm_up_model): the phase reached, or the frames, say which.
        if category == "profile_oom" and (where == "capture" or _PHASE_ORDER.index(self.phase) >= _PHASE_ORDER.index(
                Phase.KV_CACHE)):
            return "cudagraph_oom", "out of memory warming up after the KV cache and CUDA graphs were allocated"
        return None

    def _oom(self, line: LogLine, text: str) -> None:
        category = self._oom_category(text)
        title, fix = _OOM_TITLES[category], _OOM_FIXES[category]
        if _HOST_OOM.search(text):  # the same step, run out of the host's memory: the fix is RAM, not the GPU
            title, fix = _HOST_OOM_TITLES.get(category, "the host ran out of RAM"), _HOST_OOM_FIX
        self._add(Finding(category, "error", title, _evidence(line, text), fix,
                          retryable=category == "runtime_oom", rank=_OOM_RANK,
                          change={"enforce_eager": True} if category == "cudagraph_oom" else None))
        if category == "runtime_oom" and not self.serving and not self._frames \
                and _PHASE_ORDER.index(self.phase) <= _PHASE_ORDER.index(Phase.CONFIGURING):
            self._unplaced_oom.append((category, _OOM_TITLES[category]))
        figures = _oom_other_gib(text)
        if figures is not None:
            other, total = figures
            if other >= max(2.0, 0.25 * total):
                self._add(Finding(
                    "insufficient_free_memory", "error",
                    f"other processes held {other:.1f} of the GPU's {total:g} GiB when vLLM ran out of memory",
                    _evidence(line, text),
                    f"stop the other processes on the GPU (nvidia-smi) or lower gpu_memory_utilization to fit what "
                    f"is free ({total - other:.1f} GiB); the out-of-memory error follows from it", retryable=True,
                    rank=_OOM_RANK - 1))

    def _numbers(self, line: LogLine, text: str) -> bool:
        """Figures that decide a cause only together: max_model_len against what the KV cache's blocks hold."""
        length = _MAX_LEN.search(text)
        if length:
            self._max_len = int(next(g for g in length.groups() if g))
            size = _BLOCK_SIZE.search(text)
            if size:
                self._block_size = int(size.group("size"))
        blocks = _BLOCKS.search(text)
        kv_tokens = _KV_TOKENS.search(text)
        concurrency = _CONCURRENCY.search(text)
        if blocks:
            tokens = int(blocks.group("blocks")) * self._block_size
            held = f"{blocks.group('blocks')} blocks of {self._block_size}"
        elif kv_tokens:
            tokens = int(kv_tokens.group("tokens").replace(",", ""))
            held = "vLLM's GPU KV cache size"
        elif concurrency and 0 < float(concurrency.group("times")) < 1:
            # fewer than one request of max_model_len fits: V1 says so as a concurrency under 1x (0x is no blocks)
            self._max_len = int(concurrency.group("len").replace(",", ""))
            tokens = int(self._max_len * float(concurrency.group("times")))
            held = f"vLLM's maximum concurrency {concurrency.group('times')}x"
        else:
            return bool(length or concurrency)
        if self._max_len is not None and tokens < self._max_len:
            self._add(Finding(
                "max_len_exceeds_kv", "error", "max_model_len does not fit in the KV cache", _evidence(line, text),
                f"{_set('max_model_len', tokens, self.flags)}, the tokens the KV cache holds ({held}, less than "
                f"max_model_len {self._max_len}); or raise gpu_memory_utilization", rank=0,
                change={"max_model_len": tokens // BLOCK_TOKENS * BLOCK_TOKENS} if tokens >= BLOCK_TOKENS else None))
        return True

    def _unclassified(self, line: LogLine, body: str, kind: str) -> None:
        where = frame_phase(self._last_frames) if self._last_frames else None
        if where == "serving":
            # The engine's own step raised (V0's and V1's step, multi-step's advance_step): nothing catches it there,
            # so the engine dies of it, whatever it is; the quoted line is the bug's own words.
            rule = RULES_BY_CATEGORY["engine_dead"]
            self._add(Finding("engine_dead", "error", f"the engine died of an error in its step ({kind} "
                              f"{_PHASE_WORDS[where]})", _evidence(line, body), _STEP_FAILED_FIX, retryable=True,
                              rank=_RANKS[id(rule)]))
            return
        if where == "kv_connector":
            rule = RULES_BY_CATEGORY["invalid_config"]
            self._add(Finding("invalid_config", "error", f"the KV connector refused its configuration ({kind} "
                              f"{_PHASE_WORDS[where]})", _evidence(line, body), _KV_CONNECTOR_FIX,
                              rank=_RANKS[id(rule)]))
            return
        placed = {"args": "invalid_argument", "dtype": "unsupported_dtype"}.get(where or "")
        if placed:  # an exception no rule knows, raised where only one cause is possible: the frames name it
            rule = RULES_BY_CATEGORY[placed]
            self._add(Finding(placed, "error", f"{rule.title} ({kind} {_PHASE_WORDS[where or 'args']})",
                              _evidence(line, body), rule.fix(_NO_MATCH, self.flags), rank=_RANKS[id(rule)]))
            return
        place = f" {_PHASE_WORDS[where]}" if where else (" while serving" if self.serving else
                                                          " in a client" if _CLIENT_EXCEPTION.match(kind) else
                                                          f" at start-up ({self.phase.value})")
        self._add(Finding(
            "unclassified", "error", f"an error no rule explains ({kind}){place}", _evidence(line, body),
            "no known cause matches this line: read the traceback and the first ERROR above it in this process's "
            "output (the earliest error is the cause; later ones follow from it), and search vLLM's issues for "
            "the quoted message", rank=UNCLASSIFIED_RANK))

    def _throughput(self, line: LogLine, text: str) -> bool:
        stalled = _NO_PROGRESS.search(text)
        if stalled:
            self._no_progress = self._no_progress or (line, text)
            self._last_no_progress = (line, text)
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
        idle = _NOTHING_ADMITTED.search(text)
        if idle:
            self._add(Finding(
                "engine_stalled", "warning", "requests waited while none ran and the KV cache had room",
                _evidence(line, text), f"the scheduler admitted none of {idle.group('waiting')} waiting requests "
                f"with the KV cache {idle.group('usage')}% used and no tokens produced: a hung engine step or "
                "scheduler; restart the server if it lasts (`qwenops serve` restarts a stalled engine)",
                retryable=True, rank=len(RULES)))
            return True
        full = _KV_FULL.search(text)
        if full:
            self._add(Finding(
                "kv_cache_full", "warning", "the KV cache is full and requests are waiting for it",
                _evidence(line, text), _preemption_fix(full, self.flags), rank=len(RULES)))
            return True
        figures = _THROUGHPUT.search(text) if _SLOW.search(text) or _QUEUED.search(text) else None
        if figures:
            self._latency(line, text, figures)
        return bool(figures)

    def _first_token(self, line: LogLine, text: str) -> bool:
        """A benchmark's mean time to first token (its own line, or a `mean` row under a first-token heading):
        a mean over SLOW_TTFT_MS is answers that start late, the engine working (a queue, or slow prefills)."""
        if _TTFT_HEAD.search(text):
            self._ttft_lines = TTFT_ROWS
            return True
        mean = _TTFT_MEAN.match(text)
        self._ttft_lines = max(0, self._ttft_lines - 1)
        if not mean or not (mean.group("own") or self._ttft_lines):
            return False
        ms = float(mean.group("ms"))
        if ms >= SLOW_TTFT_MS:
            self._add(Finding(
                "high_latency", "warning", "a benchmark measured first tokens many seconds late",
                _evidence(line, text), f"the mean time to first token was {ms / 1000:.1f} s: requests waited before "
                "their prefill (more sent at once than max_num_seqs and the KV cache admit: lower the request rate or "
                "concurrency, or raise max_num_seqs / gpu_memory_utilization) or the prefills themselves are slow "
                "(long prompts, guided decoding's compile, a slow GPU)", rank=len(RULES)))
        return True

    def _latency(self, line: LogLine, text: str, figures: re.Match[str]) -> None:
        """Numbers that say answers are slow while the engine works: each running request gets under a token
        a second, or requests queue behind the one that runs (a warning: nothing failed)."""
        running, waiting = int(figures.group("running")), int(figures.group("waiting"))
        tokens = float(figures.group("prompt")) + float(figures.group("gen"))
        if _SLOW.search(text):
            self._slow_lines += 1
            if self._slow_lines == SLOW_LINES:
                self._add(Finding(
                    "high_latency", "warning", "the engine makes under a token a second while requests run",
                    _evidence(line, text), f"vLLM's throughput is {tokens:g} tokens/s for {running} running "
                    "request(s): the hardware is the bottleneck (a CPU-only host runs an 8B model at well under "
                    "a token a second; a GPU throttled or shared does too): use a GPU, a smaller or quantized "
                    "model, or check nvidia-smi for clocks and other processes", rank=len(RULES)))
        if _QUEUED.search(text) and float(figures.group("gen")) > 0:
            self._queued_lines += 1
            if self._queued_lines == QUEUED_LINES:
                self._add(Finding(
                    "high_latency", "warning", "requests queue behind the one that runs",
                    _evidence(line, text), f"{waiting} requests waited while {running} ran, the engine producing "
                    "tokens: they start only when it ends, so their latency is the queue's. vLLM admits more at once "
                    "when max_num_seqs and the KV cache allow (raise max_num_seqs, shorten max_model_len, or raise "
                    "gpu_memory_utilization); a long request holding the cache keeps the rest out", rank=len(RULES)))

    def _sampler_oom(self, frames: list[tuple[str, str]]) -> str:
        """The sampler's failure: in service a batch's; before any request, the dummy sampler run's, which comes in
        the profiling run and again in the warm-up after the KV cache and CUDA graphs (the phase says which). Only
        requests ask for logprobs (the dummy runs ask none): a failure gathering them is a request's, in service."""
        if self.serving or any(_LOGPROBS.search(func) for _, func in frames):
            return "runtime_oom"
        warmed = _PHASE_ORDER.index(self.phase) >= _PHASE_ORDER.index(Phase.KV_CACHE)
        return "cudagraph_oom" if warmed else "profile_oom"

    def _kv_setup(self, oom: bool) -> str:
        """What failed under the engine's KV-cache set-up when no deeper frame says: the start-up phase reached and
        vLLM's KV figures place it. Graphs captured (V1 captures under it): their OOM. KV figures printed: the check
        of them (no room at all is no blocks; room, a max_model_len too long for it), unless it ran out of memory
        (allocating the cache). Before any of that: the memory-profiling run, whose failure is most often an OOM."""
        if self.phase is Phase.WARMUP:
            return "cudagraph_oom"
        if self._kv_room is not None and not oom:
            return "kv_cache_no_blocks" if self._kv_room is False else "max_len_exceeds_kv"
        return "profile_oom"

    def _oom_category(self, text: str = "") -> str:
        where = frame_phase(self._last_frames)
        rpc = _WORKER_METHOD.search(text)
        if where is None and rpc and _RPC_PHASES.get(rpc.group(1)) in _FRAME_OOM:
            return _FRAME_OOM[_RPC_PHASES[rpc.group(1)]]  # V0's worker names the RPC it ran out of memory in
        if where in ("forward", "sampler") and not self.serving:  # a forward pass at start-up: its phase says which
            return self._sampler_oom(self._last_frames) if where == "sampler" else \
                _PHASE_OOM.get(self.phase, "runtime_oom")
        if where in _FRAME_OOM and not (where == "serving" and not self.serving):
            return _FRAME_OOM[where]
        if where is not None and where != "serving":
            return self._kv_setup(oom=True) if where == "kv_setup" else "runtime_oom"
        if self.serving:
            return "runtime_oom"
        return _PHASE_OOM.get(self.phase, "runtime_oom")

    def _add(self, finding: Finding) -> None:
        """Keep the first sighting of each finding (its line is the earliest evidence); count the rest."""
        key = (finding.category, finding.title)
        seen = self._found.get(key)
        self._found[key] = finding if seen is None else replace(seen, count=seen.count + 1)

    def _concluded(self) -> dict[tuple[str, str], Finding]:
        """The findings with what only the whole log decides: a stall nothing followed, an OOM placed by the
        phase the log reached (a paste in reverse order), a traceback cut before its exception line, an
        ERROR line that nothing else explains."""
        found = dict(self._found)
        _one_fault(found)
        if self._shm_wait is not None and self._shm_wait[2] == self._progress:
            line, text, _ = self._shm_wait
            rule = RULES_BY_CATEGORY["engine_stalled"]
            if self._shm_wait_serving:
                found[("engine_stalled", rule.title)] = Finding(
                    "engine_stalled", "error", "the engine stopped making progress (workers waited and nothing "
                    "followed)", _evidence(line, text), rule.fix(_NO_MATCH, self.flags), retryable=True,
                    rank=_RANKS[id(rule)])
            else:
                # Before the first request vLLM prints it while a worker loads, compiles or captures graphs:
                # its own words call that time-consuming work. Only a log that stops there for good is a hang.
                found[("engine_stalled", rule.title)] = Finding(
                    "engine_stalled", "warning", "workers waited on a slow start-up step and the log ends there",
                    _evidence(line, text), "normal while a large model loads, compiles or captures CUDA graphs; if "
                    "the server is still not ready many minutes later, the start-up hung: check the workers "
                    "(NCCL, a stuck download) and restart", retryable=True, rank=_RANKS[id(rule)])
        if self._stuck_bar is not None and self._stuck_bar[2] == self._progress and \
                not any(f.severity == "error" for f in found.values()):
            line, text, _ = self._stuck_bar
            found[("engine_stalled", "bar")] = Finding(
                "engine_stalled", "warning", "generation started and the log ends with nothing generated",
                _evidence(line, text), "the offline engine's progress bar stayed at 0 and nothing followed: a hung "
                "first step (tensor-parallel workers that cannot reach each other: NCCL peer-to-peer behind PCIe ACS "
                "or an IOMMU, try NCCL_P2P_DISABLE=1) or one huge prefill; if it stays there, it hung",
                retryable=True, rank=len(RULES))
        for key in self._unplaced_oom:
            # A message that names the phase (vLLM's "Failed to load model - not enough GPU memory") places it.
            # So does an OOM read where the KV cache is allocated (memory taken since the profile).
            named = next((c for c in ("weights_oom", "profile_oom", "cudagraph_oom")
                          if any(f.category == c and f.severity == "error" for f in found.values())), None) or (
                "insufficient_free_memory" if ("insufficient_free_memory", _OOM_TITLES["insufficient_free_memory"])
                in found else None)
            # A log that shows the engine configured (its init line) and no later phase: the next step that
            # allocates is the weights' load, so an OOM nothing else places (a title's) happened there.
            category = named or _PHASE_OOM.get(self.phase) or (
                "weights_oom" if (self._boot or self.phase is Phase.CONFIGURING) and not self._died_serving
                else None)
            if category and key in found:
                oom = found.pop(key)
                if named:
                    continue  # the same out-of-memory error, already named by its phase
                found[(category, _OOM_TITLES[category])] = replace(
                    oom, category=category, title=_OOM_TITLES[category], fix=_OOM_FIXES[category], retryable=False,
                    change={"enforce_eager": True} if category == "cudagraph_oom" else None)
        self._reported_oom(found)
        # A client's symptom (a cut stream) does not explain the server's cut traceback: that is still read.
        has_error = any(f.severity == "error" and f.rank < GENERIC_RANK and f.category not in _CLIENT_SIDE
                        for f in found.values())
        open_ = [tb for tb, _, _ in self._parked.values() if tb is not None and tb.frames]
        if self._traceback is not None and self._traceback.frames:
            open_.append(self._traceback)
        # A later link of a chain ("the above exception was the direct cause of ...") is the same failure as the
        # exception above it, where a finding already names that (a client's 400 under its own traceback).
        cuts = [cut for cut in [*self._cuts, *open_] if not (found and cut.chained)]
        if cuts and not has_error and not self.startup_only:
            # Each cut traceback (two processes' or two sources' pasted together) names what it can; an
            # unexplained one only when none names anything and nothing else is an error.
            read = [f for f in map(self._cut_finding, cuts) if f is not None]
            for finding in [f for f in read if f.category != "unclassified"] or read[-1:]:
                # (a cause named only as a warning, such as a start-up wait, is raised by the error that shows it)
                if all(f.category != finding.category or (finding.severity == "error" and f.severity != "error")
                       for f in found.values()) and \
                        (finding.category != "unclassified" or not any(f.severity == "error" for f in found.values())):
                    found[(finding.category, finding.title)] = finding
                    has_error = True
        self._stalled_then_dead(found)
        if self._error_line is not None and not has_error and not self.startup_only \
                and not any(f.severity == "error" for f in found.values()):
            line, text = self._error_line
            found[("unclassified", "error line")] = Finding(
                "unclassified", "error", "an ERROR line no rule explains", _evidence(line, text),
                "no known cause matches this line: read the lines around it and the first traceback above it; "
                "search vLLM's issues for the quoted message", rank=UNCLASSIFIED_RANK)
        self._reported_symptoms(found)
        return found

    def _reported_symptoms(self, found: dict[tuple[str, str], Finding]) -> None:
        """Where nothing in the log names a cause: the symptoms the reporter's words describe, as warnings, the one
        said first first."""
        if found or self.startup_only:
            return
        said = sorted((self._reported[kind][0].number, kind, category, title, fix)
                      for kind, category, title, fix in _REPORTED_SYMPTOMS if kind in self._reported)
        for _, kind, category, title, fix in said:
            line, text = self._reported[kind]
            found[(category, title)] = Finding(category, "warning", title, _evidence(line, text), fix,
                                               rank=len(RULES))

    def _stalled_then_dead(self, found: dict[tuple[str, str], Finding]) -> None:
        """The engine found dead after a throughput line of no tokens while requests ran, and nothing before its
        death failed: it hung first (a stuck collective or device; the death is the timeout that ended it)."""
        if self._last_no_progress is None:
            return
        stalled_at, text = self._last_no_progress
        dead = [f for f in found.values() if f.category == "engine_dead" and f.severity == "error"]
        if not dead or any(f.severity == "error" and f.category not in _CLIENT_SIDE | {"engine_dead"}
                           for f in found.values()):
            return
        if all(_line_number(f) > stalled_at.number for f in dead):
            rule = RULES_BY_CATEGORY["engine_stalled"]
            found[("engine_stalled", "then dead")] = Finding(
                "engine_stalled", "error", "the engine made no tokens while requests ran, and was then found dead",
                _evidence(stalled_at, text), rule.fix(_NO_MATCH, self.flags), retryable=True, rank=_RANKS[id(rule)])

    def _cut_phase(self, cut: _Traceback) -> FramePhase | None:
        """The phase a cut traceback's frames show, as far as they can tell."""
        where = frame_phase(cut.frames)
        if where is None and not cut.serving and not any(  # (vLLM's own server lives under entrypoints/openai/)
                _CLIENT_LIBRARY_FILE.search(file) or (_OPENAI_CLIENT_FILE.search(file) and "vllm" not in file)
                for file, _ in cut.frames):
            # A server's frames that show no step (the excerpt kept only the outer ones): the step the log's own
            # phase lines reached when the traceback began (weights loaded: the memory profile runs next).
            where = _CUT_AT_PHASE.get(cut.phase)
        if where == "kv_alloc" and "oom" not in self._reported:
            # The profile is over; what fails next is the check of the cache's size (a ValueError) or, where the
            # reporter says it ran out of memory, the allocation itself.
            return "kv_check"
        if where in ("client_read", "client_connect") and self._fetching(cut.process, cut.frames):
            return "media"  # vLLM's API server reading a download, not a client reading vLLM
        return where

    def _cut_finding(self, cut: _Traceback) -> Finding | None:
        """A traceback whose exception line the excerpt lost: its frames still say what vLLM was doing."""
        where = self._cut_phase(cut)
        quote_at = Evidence(f"log line {cut.first.number}",
                            quote(f"a traceback through {', '.join(_named_frames(cut.frames)[-4:])} "
                                  f"(its exception line is missing)"))
        by_phase = {"weights": "weights_oom", "capture": "cudagraph_oom", "profile": "profile_oom",
                    "bind": "port_in_use", "model_files": "model_not_found", "media": "media_fetch_error",
                    "config": "invalid_config", "input": "request_too_long", "wait": "engine_stalled",
                    "preprocess": "request_too_long", "dtype": "unsupported_dtype", "args": "invalid_argument",
                    "kv_alloc": "insufficient_free_memory", "kv_connector": "invalid_config"}
        if where == "kv_setup":
            category = self._kv_setup(oom=False)
        elif where == "kv_check":
            # The check raises for one of two reasons; vLLM's figures before it tell which: room for some blocks
            # (or the length it was asked to hold) is a max_model_len too long, none at all is no blocks.
            category = "kv_cache_no_blocks" if self._kv_room is False \
                else "max_len_exceeds_kv"
        elif where == "device" and (RAISE, "ValueError") in cut.frames:
            category = "insufficient_free_memory"  # the one ValueError vLLM's init_device raises: less free memory
        elif where in by_phase:
            category = by_phase[where]
        elif where in ("client_connect", "client_read") or (
                where is None and self._client_retries and
                any(_OPENAI_CLIENT_FILE.search(file) for file, _ in cut.frames)):
            return self._client_cut(where == "client_connect", quote_at)
        elif where == "forward":
            # The model's forward pass: out of memory is the common failure there; at start-up, the phase's OOM.
            category = "runtime_oom" if self.serving else _PHASE_OOM.get(self.phase, "runtime_oom")
        elif where == "sampler":
            category = self._sampler_oom(cut.frames)
        elif where == "engine_client":
            rule = RULES_BY_CATEGORY["engine_dead"]
            return Finding("engine_dead", "error", "the API server found its engine dead (the excerpt ends before the "
                           "error)", (quote_at,), rule.fix(_NO_MATCH, self.flags), retryable=True, rank=GENERIC_RANK)
        elif where is None and cut.serving and _streamed(cut.frames):
            return self._stream_failed((quote_at,))
        elif where == "serving" or cut.serving:
            return None  # the engine died in service: engine_dead says so, the cause is not in the excerpt
        else:
            return Finding("unclassified", "error", "a traceback cut before its exception line", (quote_at,),
                           "the log ends inside a traceback: find the exception line below it in the full log "
                           "(the first error of that process is the cause)", rank=UNCLASSIFIED_RANK)
        fix = (_OOM_FIXES.get(category) or _MEDIA_FIX if category == "media_fetch_error"
               else _KV_CONNECTOR_FIX if where == "kv_connector"
               else _OOM_FIXES.get(category) or _CUT_FIXES.get(category) or
               RULES_BY_CATEGORY[category].fix(_NO_MATCH, self.flags))
        request = category == "request_too_long"  # one request refused, the server kept serving
        failed = ("a request failed" if category in ("request_too_long", "media_fetch_error") else
                  "the engine failed" if category in ("runtime_oom", "engine_stalled") else "the start-up failed")
        return Finding(category, "warning" if request else "error", f"{failed} {_PHASE_WORDS[where]} (the excerpt "
                       f"ends before the error; this is the common cause there)", (quote_at,), fix,
                       rank=UNCLASSIFIED_RANK - 1)

    def _client_cut(self, connecting: bool, quote_at: Evidence) -> Finding:
        """A client library's traceback cut before its exception: opening the connection, the request never reached
        a server; reading the answer, most often the client's read timeout."""
        if connecting:
            return Finding("unclassified", "warning", "the client could not connect to the server (the excerpt ends "
                           "before its error)", (quote_at,), _CONNECT_FIX, rank=UNCLASSIFIED_RANK - 1)
        rule = RULES_BY_CATEGORY["client_timeout"]
        return Finding("client_timeout", "error", "the client's read of the answer ended in an error (the excerpt "
                       "ends before it): most often its read timeout, else a stream cut mid-answer", (quote_at,),
                       rule.fix(_NO_MATCH, self.flags) + "; if the error was RemoteProtocolError or an "
                       "incomplete chunked read, the stream was cut instead (stream_interrupted)",
                       rank=UNCLASSIFIED_RANK - 1)

    @staticmethod
    def _stream_failed(evidence: tuple[Evidence, ...]) -> Finding:
        """An exception in the server's streaming response after it answered 200: the client's stream was cut."""
        rule = RULES_BY_CATEGORY["stream_interrupted"]
        return Finding("stream_interrupted", "error", "the server's streaming response failed after it had begun: "
                       "the client's stream ended early", evidence, _STREAM_FAILED_FIX, retryable=True,
                       rank=_RANKS[id(rule)])

    def findings(self) -> list[Finding]:
        """Errors first, the root cause (most specific) first among them; then warnings, then notes.

        The generic "the engine died" is a consequence whenever something more specific was found, and
        is then reported as a note under it, not as a second error; so is an unexplained error beside a
        named cause. A client's cut stream or timeout beside the server's own failure (two sources pasted
        together) follows from that failure: both stay, the server's first.
        """
        found = list(self._concluded().values())
        if not (self.startup_only or self._saw_traceback) and \
                [f.category for f in found if f.severity == "error"] == ["engine_dead"] and \
                all(f.count == 1 and all(_CLIENT_TEARDOWN.search(e.quote) for e in f.evidence)
                    for f in found if f.severity == "error"):
            # The engine client's own line when its engine process ends, and nothing else failed (no traceback,
            # no other error): an offline LLM() prints it as its script exits. A warning: a real death says more.
            found = [replace(f, severity="warning", title=f"{f.title} (no traceback or failed request: at a "
                             "script's or server's exit this is its normal teardown)")
                     if f.severity == "error" else f for f in found]
        if any(f.severity == "error" and f.category not in _NOT_THE_SERVERS for f in found):
            found = [replace(f, rank=GENERIC_RANK + 1, title=f"{f.title} (the server's failure above explains it)")
                     if f.category in _CLIENT_SIDE and f.severity == "error" else f for f in found]
        if any(f.severity == "error" and f.rank < GENERIC_RANK for f in found):
            found = [replace(f, severity="info", title=f"{f.title} (follows from the error above)")
                     if f.rank >= GENERIC_RANK and f.severity == "error" and f.category not in _CLIENT_SIDE else f
                     for f in found]
        named_error = any(f.severity == "error" and f.rank < UNCLASSIFIED_RANK - 1 and f.category != "unclassified"
                          for f in found)  # an unexplained error of a rule's own (a failed kernel build) stays one
        if named_error:
            found = [replace(f, severity="info", title=f"{f.title} (probably follows from the error above)")
                     if f.category == "unclassified" and f.severity == "error" else f for f in found]
        if any(f.category in _QUEUEING for f in found):
            # Requests waiting for KV cache room are why answers come late: the latency follows from the queue.
            found = [replace(f, rank=f.rank + 1) if f.category == "high_latency" else f for f in found]
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(found, key=lambda f: (order[f.severity], f.rank))

    def root_cause(self) -> Finding | None:
        errors = [f for f in self.findings() if f.severity == "error"]
        return errors[0] if errors else None


RULES_BY_CATEGORY = {rule.category: rule for rule in reversed(RULES)}  # the first rule of each category
# What a client sees of a server's failure, and the findings that say nothing of the server's own state.
_CLIENT_SIDE = frozenset({"stream_interrupted", "client_timeout"})
_NOT_THE_SERVERS = _CLIENT_SIDE | {"unclassified", "auth", "request_too_long"}
_QUEUEING = frozenset({"kv_cache_full", "kv_cache_preemption"})  # what makes requests wait for the KV cache
# Fixes for a cause named from a cut traceback alone, where the first rule's fix needs numbers the excerpt lost.
_KV_CONNECTOR_FIX = ("vLLM could not build the KV connector its --kv-transfer-config names (LMCache, NIXL, a "
                     "disaggregated prefill's transfer): the quoted line (or the exception below the traceback) names "
                     "the value the connector refused; fix it in --kv-transfer-config or the connector's own config "
                     "(LMCache: LMCACHE_* variables or its YAML: chunk_size, max_local_cpu_size), or serve without "
                     "the connector to confirm")
_CUT_FIXES = {
    "insufficient_free_memory": "less GPU memory was free than gpu_memory_utilization asks for: stop the other "
                                "processes on the GPU (nvidia-smi) or lower gpu_memory_utilization",
    "max_len_exceeds_kv": "lower max_model_len to what the KV cache holds (vLLM's error line gives its estimate), or "
                          "raise gpu_memory_utilization",
    "invalid_config": "vLLM refused its configuration while checking it: the exception line below this traceback "
                      "(in the full log) names the value; fix that profile value",
    "request_too_long": "a request's prompt was checked against max_model_len and refused (most often: too long): "
                        "lower its max_tokens or trim the prompt, or raise max_model_len; vLLM kept serving",
}


def _one_fault(found: dict[tuple[str, str], Finding]) -> None:
    """A device fault read twice: once where nothing placed it (a title, a line before the traceback that shows
    where it happened), an unexplained crash, and again as the fault that killed the engine while it ran the model.
    It is one error, and the second reading says where it happened: the first goes."""
    died = {crash.group(0).strip() for f in found.values() if f.category == "engine_dead" and f.severity == "error"
            for e in f.evidence if (crash := _CRASH.search(e.quote)) and _DEVICE_FAULT.search(crash.group(0))}
    for key, f in list(found.items()):
        if f.category == "unclassified" and f.severity == "error" and \
                any((crash := _CRASH.search(e.quote)) and crash.group(0).strip() in died for e in f.evidence):
            del found[key]


def _named_frames(frames: list[tuple[str, str]]) -> list[str]:
    """The functions of a traceback's real frames (not an RPC or a code line's call)."""
    return [func for file, func in frames if file and file not in (CODE, RAISE, SERVER)]
_NO_MATCH = cast("re.Match[str]", re.match(r"(?P<wanted>)", ""))
_STREAM_FAILED_FIX = ("the server raised while it streamed an answer it had begun (200 sent), so the client saw the "
                      "stream end early: the traceback's exception names what failed (often a request option the "
                      "streaming path does not support, such as beam search or n > 1 on older versions): send the "
                      "request without it, or upgrade vLLM; the engine itself kept serving")
_STEP_FAILED_FIX = ("the engine cannot go on after an error in its step: restart the server (`qwenops serve` does); "
                    "the quoted line is a bug in vLLM or the model for this request or these flags: search vLLM's "
                    "issues for it, and try without the feature the frames name (multi-step scheduling, speculative "
                    "decoding, chunked prefill, a custom attention backend) or a newer vLLM")
# An exception a client library raises: it is the client's, never the server's start-up.
_CLIENT_EXCEPTION = re.compile(r"(?:openai|httpx|httpcore|requests|aiohttp|urllib3|litellm)\.")
_STALLED_WORKER_FIX = ("one worker stopped answering while the engine waited on it (a hung step, NCCL, a dead GPU): "
                       "check every worker's log and the GPUs (nvidia-smi), then restart; `qwenops serve` restarts a "
                       "stalled engine itself")
_MEDIA_FIX = ("vLLM could not download an image or video a request named by URL: check that the URL answers from "
              "the server's network (not only the client's), or send the media inline (base64 data URL); "
              "raise VLLM_IMAGE_FETCH_TIMEOUT for slow hosts")
_DEGENERATE_FIX = ("the model's output degenerated ({what}): check the dtype (float16 overflows on models trained "
                   "in bfloat16: use bfloat16, or float32 on a GPU without it), the checkpoint and its quantization, "
                   "the chat template and the sampling parameters (repetition_penalty, temperature), and whether a "
                   "vLLM upgrade or a parallel setting (tensor_parallel_size, custom all-reduce) started it")
_REASONING_FIX = ("the server split no reasoning off the answer: serve with the --reasoning-parser made for this "
                  "model (one that splits at </think>; a pass-through parser leaves it all in content), or strip "
                  "the <think> block in the client; reasoning_content then holds it")
_ANSWER_IN_REASONING_FIX = (
    "the server's reasoning parser filed the whole answer as reasoning: with thinking turned off (Qwen3's "
    "chat_template_kwargs enable_thinking: false) serve with the model's own parser (--reasoning-parser qwen3; "
    "deepseek_r1 waits for a </think> that never comes), or read reasoning_content in the client; if finish_reason "
    "is \"length\", the reasoning used up max_tokens: raise it")
_MOVED_FIXES = {"media_fetch_error": _MEDIA_FIX, "engine_stalled": _STALLED_WORKER_FIX}
# The symptoms a reporter's words name, where the log shows nothing else: (kind, category, title, fix).
_REPORTED_SYMPTOMS = (
    ("hang", "engine_stalled", "the reporter says the server hangs; no log line shows why",
     "a stalled engine logs nothing: look for throughput lines with no tokens while requests run, or requests "
     "waiting while none runs (`qwenops status`), and for a stuck worker or NCCL in every process's log; restart the "
     "server (`qwenops serve` restarts a stalled engine); with more of the log, troubleshoot can say more"),
    ("garbled", "incoherent_output", "the reporter says the answers are garbled or repeat; no answer is pasted whole",
     _DEGENERATE_FIX.format(what="as reported")),
    ("slow", "high_latency", "the reporter says answers are slow; no log line shows why",
     "compare the throughput lines (tokens/s, requests running and waiting) with what this GPU and model should do "
     "(`qwenops status`; `vllm bench serve`): requests waiting behind a full KV cache or max_num_seqs, "
     "--enforce-eager, CPU offload or a version change slow answers; with more of the log, troubleshoot can say which"),
    ("endless", "unclassified", "the reporter says the answer does not stop; no answer is pasted whole", _RUNAWAY_FIX),
    ("kv_full", "kv_cache_full",
     "the reporter says the KV cache is full and requests wait; no throughput line shows it",
     "requests wait for KV cache room: lower max_num_seqs or max_model_len (or cap max_tokens) so fewer tokens are "
     "held at once, raise gpu_memory_utilization, use an fp8 KV cache, or add GPUs or replicas; the throughput lines "
     "(GPU KV cache usage, Waiting/Pending) show it"),
    ("auth", "auth", "the reporter says requests are refused (401/403) with the API key set; no log line shows it",
     "the server checks `Authorization: Bearer KEY` against its --api-key (or VLLM_API_KEY): give the client exactly "
     "that key (an OpenAI-compatible provider's API-key field), or start the server without a key; a proxy in front "
     "may drop the header"),
)


def classify_lines(lines: Iterable[LogLine], flags: Flags | None = None) -> list[Finding]:
    classifier = LogClassifier(flags=dict(flags or {}))
    for line in lines:
        classifier.feed(line)
    return classifier.findings()


def classify_text(text: Iterable[str], flags: Flags | None = None) -> list[Finding]:
    """Findings of already-decoded lines (tests, the supervisor's captured output)."""
    return classify_lines(lines_of(text), flags)
