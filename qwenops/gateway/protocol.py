"""The gateway's WebSocket protocol: JSON text frames, checked here and nowhere else (sans-IO).

Client to gateway::

    {"type": "chat", "id": "c1", "messages": [...], "max_tokens": 64, ...}   any other key is a chat parameter
    {"type": "cancel", "id": "c1"}
    {"type": "ping"}                                                       an application ping, for browsers

Gateway to client::

    {"type": "delta", "id": "c1", "content": "..."}                         "reasoning" too, when the server sends it
    {"type": "resumed", "id": "c1", "after_tokens": 40, "gap_ms": 61234.5}  the server was cut; deltas go on
    {"type": "done", "id": "c1", "finish_reason": "stop", "usage": {...}}
    {"type": "error", "id": "c1", "code": "interrupted", "message": "..."}  "id" is null for a frame with no chat
    {"type": "pong"}

Every chat ends with exactly one `done` or one `error`. The error codes are `CODES`; docs/gateway.md
says what each means and what to do. `parse_frame` turns a client's text into a typed frame or a
`FrameError` that names the field, so one bad frame is answered, never fatal to the connection.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _string  # json.dumps' own, C, for ensure_ascii=False
from typing import Any

from qwenops.units import MAX_TOKENS
from qwenops.untrusted import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS

# Error codes, the stream client's typed errors first (qwenops.errors names the exception of each).
CODES: dict[str, str] = {
    "in_band_error": "the server reported an error inside the stream (its engine died or refused mid-answer)",
    "interrupted": "the stream from the server ended before its end and was not resumed, the server was not "
                   "ready again within --queue-deadline, or its supervisor gave up (FATAL); the message says which",
    "unreachable": "the server could not be reached and the chat could not wait for it (--queue-size 0, or its "
                   "supervisor gave up)",
    "http_status": "the server answered with an HTTP error status; the message quotes it",
    "timeout": "the server sent nothing for longer than the read timeout",
    "bad_request": "the frame or its parameters are not acceptable; the message names the field",
    "duplicate_id": "a chat with this id is still running on this connection",
    "too_many_chats": "this connection already runs its most chats at once",
    "overloaded": "the gateway already runs its most chats at once, or its queue for a restarting server is "
                  "full; retry later",
    "slow_reader": "the client read too slowly: the chat was cancelled so the gateway's memory stays bounded",
    "cancelled": "the client cancelled the chat",
    "shutting_down": "the gateway is stopping; the chat was cancelled or not started",
    "internal": "a bug in the gateway; the connection goes on",
}

# Keys a chat frame may not set: the gateway owns them (one model, always streamed, usage included).
_OWNED = {"model": "the gateway serves the one model it was started for",
          "stream": "the gateway always streams", "stream_options": "the gateway always asks for usage",
          "n": "one answer per chat (send several chats instead)"}
# What a chat frame may set besides its messages: parameters that shape its own answer only. Any other key is
# refused by name: vLLM reads many more request fields, and some are the operator's, not a client's (a chat
# template rendered on the server, scheduling priority, request and KV-transfer ids, the prefix-cache salt,
# extra engine arguments). An allow-list, so a field a newer vLLM adds is refused until it is judged here.
CHAT_PARAMETERS = frozenset({
    # OpenAI's
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "presence_penalty", "frequency_penalty",
    "stop", "seed", "logprobs", "top_logprobs", "logit_bias", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "user", "reasoning_effort", "n",
    # vLLM's sampling and output
    "top_k", "min_p", "repetition_penalty", "length_penalty", "min_tokens", "ignore_eos", "stop_token_ids",
    "bad_words", "allowed_token_ids", "include_stop_str_in_output", "skip_special_tokens",
    "spaces_between_special_tokens", "truncate_prompt_tokens", "prompt_logprobs", "echo", "add_generation_prompt",
    "continue_final_message", "documents", "return_token_ids", "chat_template_kwargs",
    # vLLM's structured outputs (both generations of their names)
    "structured_outputs", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
    "guided_whitespace_pattern",
})
# chat_template_kwargs reach the server's template as variables: only the switch Qwen3's template reads.
TEMPLATE_KWARGS = frozenset({"enable_thinking"})
# Message content parts a chat may hold: the gateway relays text chats (a media URL would be fetched by the
# server, from inside its network).
CONTENT_PARTS = frozenset({"text"})
MAX_ID_CHARS = 128
# The parameters that bound an answer's length: checked here, and enforced on the server's stream too
# (the app stops one that runs past them).
TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")


class FrameError(Exception):
    """A client frame that cannot be used: answered with an error frame, the connection goes on."""

    def __init__(self, message: str, *, code: str = "bad_request", id: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.id = message, code, id


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)  # passed to the server as they came



@dataclass(frozen=True, slots=True)
class Cancel:
    id: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Frame = Chat | Cancel | Ping


# ------------------------------------------------------------------------------------------ decoding
#
# A frame is hostile until checked. json.loads is C and fast, but it accepts what JSON does not bound:
# nesting to the recursion limit (and a RecursionError past it), numbers that overflow to Infinity or
# have 100,000 digits (which Python refuses to turn into an int, or back into text for the server),
# duplicate keys (the last one silently wins), and "\ud800", a lone surrogate, which is no character:
# it cannot be encoded as UTF-8, so it would fail only later, sending it upstream or back to the client.
# One hook marks an object with a duplicate key, and one walk without recursion (`_problem`) finds the
# first problem with the path to it, so the answer names the field. (Hooks for numbers would cost a
# Python call per number, and a regex that tells when they are needed more than json.loads itself: the
# walk checks numbers where it meets them.)

_SURROGATE = re.compile("[\ud800-\udfff]")
_BIG = 10**MAX_JSON_INT_DIGITS
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Duplicates(dict[str, Any]):
    """An object that named a key twice (the last value kept, as json.loads does), marked for `_problem`."""

    key: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    marked = _Duplicates(value)
    seen: set[str] = set()
    marked.key = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
    return marked


def _surrogate(text: str) -> str | None:
    """The first lone surrogate in TEXT as U+XXXX, or None (ASCII, the common case, is checked in C)."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def _label(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else _short(key, 40)


def _path(parts: tuple[Any, ...] | None) -> str:
    """`parts` is a linked list (parent, key) built only on the way down; the path text only on error."""
    keys: list[str | int] = []
    while parts is not None:
        parts, key = parts
        keys.append(key)
    text = ""
    for key in reversed(keys):
        text += f"[{key}]" if isinstance(key, int) else (f".{_label(key)}" if text else _label(key))
    return text


def _problem(data: Any) -> str | None:
    """The first thing in DATA the gateway refuses (nesting, a marked value, a lone surrogate), as the
    message of a `bad_request`; None if there is none. Iterative, so no depth of input reaches Python's
    recursion limit, and nothing deeper than MAX_JSON_DEPTH is walked; strings and numbers are checked
    where they stand and the path to them is built only for the message (a frame of 60,000 empty objects
    is walked in about the time json.loads took to read it)."""
    if not isinstance(data, (dict, list)):
        return _value_problem(data, None)
    return _walk(data)


def _walk(data: dict[str, Any] | list[Any]) -> str | None:
    stack: list[tuple[dict[str, Any] | list[Any], int, tuple[Any, ...] | None]] = [(data, 1, None)]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            if isinstance(value, _Duplicates):
                return _at(path, f"duplicate key {_short(value.key, 40)}")
            if not "".join(value).isascii():  # the keys, checked in C
                found = next(filter(None, map(_surrogate, value)), None)
                if found:
                    return _at(path, f"a key holds a lone surrogate ({found}), which is not text")
            items: Any = value.items()
        else:
            items = enumerate(value)
        for key, item in items:
            kind = type(item)
            if kind is dict or kind is list or kind is _Duplicates:
                if depth >= MAX_JSON_DEPTH:
                    return TOO_DEEP
                if item:
                    stack.append((item, depth + 1, (path, key)))
            elif ((kind is str and not item.isascii()) or (kind is int and not -_BIG < item < _BIG)
                  or (kind is float and item - item != 0.0)):  # inf - inf is nan
                problem = _value_problem(item, (path, key))
                if problem is not None:
                    return problem
    return None


def _value_problem(value: Any, path: tuple[Any, ...] | None) -> str | None:
    if isinstance(value, str):
        found = _surrogate(value)
        return _at(path, f"a lone surrogate ({found}) is not text") if found else None
    if isinstance(value, float) and not math.isfinite(value):
        return _at(path, "not a finite number (beyond ±1.8e308)")
    if isinstance(value, int) and not isinstance(value, bool) and not -_BIG < value < _BIG:
        return _at(path, f"an integer of more than {MAX_JSON_INT_DIGITS} digits")
    return None


def _at(path: tuple[Any, ...] | None, message: str) -> str:
    return message if path is None else f"{_path(path)}: {message}"


TOO_DEEP = f"the frame is nested more than {MAX_JSON_DEPTH} levels deep"


def _decode(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_object)
    except RecursionError:  # the C decoder's own bound, near Python's recursion limit (~1,000 levels)
        raise FrameError(TOO_DEEP) from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # Python's own bound: 4,300 digits
            raise FrameError(f"an integer of more than {MAX_JSON_INT_DIGITS} digits") from None
        raise FrameError(f"the frame is not JSON ({_short(exc)})") from None


def parse_frame(text: str) -> Frame:
    """The typed frame of one text message, or `FrameError` naming what is wrong."""
    data = _decode(text)
    frame_id = data.get("id") if isinstance(data, dict) and getattr(data, "key", None) != "id" else None
    known_id = frame_id if (isinstance(frame_id, str) and 0 < len(frame_id) <= MAX_ID_CHARS
                            and _surrogate(frame_id) is None) else None
    problem = _problem(data)
    if problem is not None:
        raise FrameError(problem, id=known_id)
    if not isinstance(data, dict):
        raise FrameError(f"the frame must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "ping":
        return Ping()
    if kind not in ("chat", "cancel"):
        raise FrameError(f"type: must be one of chat, cancel, ping; got {_short(kind)}", id=known_id)
    if not isinstance(frame_id, str) or not frame_id or len(frame_id) > MAX_ID_CHARS:
        raise FrameError(f"id: must be a non-empty string of at most {MAX_ID_CHARS} characters, got "
                         f"{_short(frame_id)}")
    if kind == "cancel":
        return Cancel(frame_id)
    return Chat(frame_id, _messages(data.get("messages"), frame_id), _params(data, frame_id))


def _messages(messages: Any, frame_id: str) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise FrameError("messages: must be a non-empty array of {role, content} objects", id=frame_id)
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise FrameError(f"messages[{index}]: must be an object with a string role", id=frame_id)
        content = message.get("content")
        for part_index, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in CONTENT_PARTS:
                raise FrameError(f"messages[{index}].content[{part_index}]: only text parts are relayed, got "
                                 f"{_short(kind)}", id=frame_id)
    return messages


def _params(data: Mapping[str, Any], frame_id: str) -> dict[str, Any]:
    params = {key: value for key, value in data.items() if key not in ("type", "id", "messages")}
    for key, value in params.items():
        if key in _OWNED and not (key == "n" and type(value) is int and value == 1):
            raise FrameError(f"{key}: not a chat parameter here ({_OWNED[key]})", id=frame_id)
        if key not in CHAT_PARAMETERS:
            name = key if key.isidentifier() and len(key) <= 60 else _short(key, 60)
            raise FrameError(f"{name}: not a chat parameter the gateway relays (it relays sampling "
                             "and output parameters; the server's own settings are its operator's)", id=frame_id)
    for key in TOKEN_LIMITS:
        value = params.get(key)
        if value is not None and (type(value) is not int or not 1 <= value <= MAX_TOKENS):
            raise FrameError(f"{key}: must be a whole number from 1 to {MAX_TOKENS:,}, got {_short(value)}",
                             id=frame_id)
    limit = max_tokens(params)
    minimum = params.get("min_tokens")
    if minimum is not None and (type(minimum) is not int or not 0 <= minimum <= (limit or MAX_TOKENS)):
        raise FrameError(f"min_tokens: must be a whole number from 0 to {limit or MAX_TOKENS:,} (max_tokens), got "
                         f"{_short(minimum)}", id=frame_id)
    if (params.get("ignore_eos") or minimum) and limit is None:
        raise FrameError("ignore_eos and min_tokens need max_tokens: without it the answer runs to the server's "
                         "context length", id=frame_id)
    kwargs = params.get("chat_template_kwargs")
    if kwargs is not None and not (isinstance(kwargs, dict) and set(kwargs) <= TEMPLATE_KWARGS
                                   and all(isinstance(value, bool) for value in kwargs.values())):
        raise FrameError(f"chat_template_kwargs: only {', '.join(sorted(TEMPLATE_KWARGS))} (true or false), got "
                         f"{_short(kwargs)}", id=frame_id)
    return params


def max_tokens(params: Mapping[str, Any]) -> int | None:
    """The most tokens a chat's answer may have: the smaller of max_tokens and max_completion_tokens
    (both checked by `parse_frame`), or None for the server's own limit."""
    limits = [params[key] for key in TOKEN_LIMITS if params.get(key) is not None]
    return min(limits) if limits else None


def _short(value: object, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------- out


def sendable(text: str) -> str:
    """TEXT with each lone surrogate replaced by U+FFFD. A server's JSON can hold one ("\\ud800") as a
    client's can; no WebSocket text frame can (it must be UTF-8): sending it would fail in the writer and
    leave the connection silent. ASCII, most frames, is checked in C."""
    return text if text.isascii() or not _SURROGATE.search(text) else _SURROGATE.sub("\N{REPLACEMENT CHARACTER}", text)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps with options makes one a call


def dumps(frame: Mapping[str, Any]) -> str:
    return _ENCODER.encode(frame)


def delta_head(chat_id: str) -> str:
    """The start of every delta frame of one chat, made once per chat: `{"type":"delta","id":"c1","content":`."""
    return '{"type":"delta","id":' + _string(chat_id) + ',"content":'


def delta(chat_id: str, content: str, reasoning: str = "", *, head: str | None = None) -> str:
    """A delta frame, the text `dumps` gives for it, built from its one or two strings: a frame per token,
    where json.dumps' walk of a dict was a tenth of the gateway's CPU per token (benchmarks/gateway.py).
    HEAD: `delta_head(chat_id)`, when the caller keeps it."""
    head = delta_head(chat_id) if head is None else head
    if reasoning:
        return head + _string(content) + ',"reasoning":' + _string(reasoning) + "}"
    return head + _string(content) + "}"


def resumed(chat_id: str, after_tokens: int, gap_ms: float) -> str:
    """The server's stream was cut after AFTER_TOKENS tokens and continued GAP_MS later: deltas go on."""
    return dumps({"type": "resumed", "id": chat_id, "after_tokens": after_tokens, "gap_ms": gap_ms})


def done(chat_id: str, finish_reason: str | None, usage: Mapping[str, int] | None) -> str:
    return dumps({"type": "done", "id": chat_id, "finish_reason": finish_reason, "usage": usage})


def error(chat_id: str | None, code: str, message: str) -> str:
    assert code in CODES, code  # every code is documented
    return dumps({"type": "error", "id": chat_id, "code": code, "message": message})


PONG = dumps({"type": "pong"})
