"""The requests a tuning run sends: synthetic (fixed prompt and answer lengths) or real prompts from JSONL.

A JSONL workload has one request per line, `{"messages": [...], "max_tokens": N}`; every line is
checked before anything starts, and the first bad one is reported with its line number and field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from qwenops.errors import BadInputError
from qwenops.units import MAX_TOKENS

ROLES = ("system", "user", "assistant", "tool", "developer")
# Tokens a chat template adds around each message (role markers, newlines): Qwen's ChatML adds 5,
# and the assistant's opening adds 3; 8 a message is a safe bound for the templates we serve.
TEMPLATE_TOKENS_PER_MESSAGE = 8
MAX_WORKLOAD_BYTES = 64 * 1024 * 1024
# Items, not only bytes: 60 MiB of 2 million empty messages was 0.8 GB of Python objects (audit 5); tune sends
# `--requests` a level, and no chat template takes a thousand turns.
MAX_WORKLOAD_REQUESTS = 100_000
MAX_WORKLOAD_MESSAGES = 1024
_FORMAT_HINT = 'each line: {"messages": [{"role": "user", "content": "..."}], "max_tokens": N}'

# Words a byte-level BPE tokenizer (Qwen's, the tiny model's) keeps as one token each with their
# leading space; a synthetic prompt of N of them is about N tokens (the exact count is measured).
_FILLER = ("the", "sea", "is", "wide", "and", "deep", "waves", "roll", "in", "out")


@dataclass(frozen=True)
class WorkloadRequest:
    messages: tuple[Mapping[str, Any], ...]
    max_tokens: int
    # Synthetic requests generate exactly max_tokens (vLLM's `ignore_eos`, as `vllm bench serve --dataset-name
    # random` does); real prompts end where the model ends them.
    ignore_eos: bool
    prompt_tokens_bound: int  # at most this many prompt tokens (template included): for pruning by max_model_len

    @property
    def tokens_bound(self) -> int:
        """Most tokens this request can occupy in the KV cache: prompt and answer."""
        return self.prompt_tokens_bound + self.max_tokens


@dataclass(frozen=True)
class Workload:
    kind: Literal["synthetic", "file"]
    source: str  # "synthetic" or the file's path
    requests: tuple[WorkloadRequest, ...]
    prompt_tokens: int | None  # the synthetic prompt length asked for
    output_tokens: int  # the largest max_tokens of any request

    @property
    def longest_tokens(self) -> int:
        return max(r.tokens_bound for r in self.requests)

    def describe(self) -> str:
        if self.kind == "synthetic":
            return f"synthetic: {self.prompt_tokens} prompt tokens, {self.output_tokens} output tokens per request"
        return f"{self.source}: {len(self.requests)} requests, max_tokens up to {self.output_tokens}"


def synthetic_workload(prompt_tokens: int, output_tokens: int) -> Workload:
    words = max(prompt_tokens - TEMPLATE_TOKENS_PER_MESSAGE, 1)
    prompt = " ".join(_FILLER[i % len(_FILLER)] for i in range(words))
    request = WorkloadRequest(messages=({"role": "user", "content": prompt},), max_tokens=output_tokens,
                              ignore_eos=True, prompt_tokens_bound=prompt_tokens + TEMPLATE_TOKENS_PER_MESSAGE)
    return Workload("synthetic", "synthetic", (request,), prompt_tokens, output_tokens)


def load_workload(path: Path) -> Workload:
    """Parse a JSONL workload; BadInputError names the first bad line and field."""
    flag = "--workload"
    from qwenops.readfile import read_capped

    try:
        raw = read_capped(path, MAX_WORKLOAD_BYTES)
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}", field=flag) from None
    if len(raw) > MAX_WORKLOAD_BYTES:
        raise BadInputError(f"{path} is larger than {MAX_WORKLOAD_BYTES // 2**20} MiB", field=flag)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path} is not UTF-8 text (byte {exc.start})", field=flag) from None
    requests: list[WorkloadRequest] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(requests) == MAX_WORKLOAD_REQUESTS:
            raise BadInputError(f"{path} has more than {MAX_WORKLOAD_REQUESTS:,} requests", field=flag,
                                hint="a workload is a sample: tune sends --requests of them at each level")
        requests.append(_request(line, number, path))
    if not requests:
        raise BadInputError(f"{path} has no requests", field=flag, hint=_FORMAT_HINT)
    return Workload("file", str(path), tuple(requests), None, max(r.max_tokens for r in requests))


def _shown(value: object) -> str:
    """A rejected value for the one-line error: repr (control characters escaped), cut at 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}… ({len(text):,} characters)"


def _bad(path: Path, number: int, what: str) -> BadInputError:
    return BadInputError(f"{path.name} line {number}: {what}", field="--workload", hint=_FORMAT_HINT)


def _request(line: str, number: int, path: Path) -> WorkloadRequest:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _bad(path, number, f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:  # nested past the parser's limit: no request is
        raise _bad(path, number, "nested too deeply to be a request") from None
    except ValueError:  # Python's own bound on an integer's digits (4,300), not a JSONDecodeError
        raise _bad(path, number, "an integer of more than 4,300 digits") from None
    if not isinstance(data, dict):
        raise _bad(path, number, f"must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - {"messages", "max_tokens"})
    if unknown:
        raise _bad(path, number, f"{unknown[0]}: unknown field (allowed: messages, max_tokens)")
    messages = cast("list[Mapping[str, Any]]", data.get("messages"))  # checked by _prompt_bound
    size = _prompt_bound(messages, number, path)
    max_tokens = data.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
        raise _bad(path, number, f"max_tokens: must be a whole number >= 1 (got {_shown(max_tokens)})")
    return WorkloadRequest(messages=tuple(messages), max_tokens=max_tokens, ignore_eos=False,
                           prompt_tokens_bound=size + TEMPLATE_TOKENS_PER_MESSAGE)


def _prompt_bound(messages: Any, number: int, path: Path) -> int:
    """MESSAGES checked ({role, content} objects, at most MAX_WORKLOAD_MESSAGES); their prompt's tokens, bounded."""
    if not isinstance(messages, list) or not messages:
        raise _bad(path, number, "messages: must be a non-empty list of {role, content} objects")
    if len(messages) > MAX_WORKLOAD_MESSAGES:
        raise _bad(path, number, f"messages: {len(messages):,} of them, at most {MAX_WORKLOAD_MESSAGES:,}")
    size = 0
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(path, number, f"{where}: must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise _bad(path, number, f"{where}.role: must be one of {', '.join(ROLES)} (got {_shown(role)})")
        if not isinstance(content, str):
            raise _bad(path, number, f"{where}.content: must be a string")
        try:  # A byte-level BPE never makes more tokens than bytes: a bound, not an estimate.
            size += len(content.encode("utf-8")) + TEMPLATE_TOKENS_PER_MESSAGE
        except UnicodeEncodeError as exc:  # "\ud800" is valid JSON, and no request can carry it
            raise _bad(path, number, f"{where}.content: a lone surrogate (\\u{ord(exc.object[exc.start]):04x}) "
                       "is not text") from None
    return size


def workload_from(prompt_tokens: int | None, output_tokens: int | None, path: Path | None,
                  defaults: Sequence[int]) -> Workload:
    """The workload the options ask for; lengths not given take DEFAULTS (prompt, output)."""
    if path is not None:
        return load_workload(path)
    return synthetic_workload(prompt_tokens or defaults[0], output_tokens or defaults[1])
