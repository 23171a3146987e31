"""The gateway's WebSocket protocol: JSON text frames, checked here and nowhere else (sans-IO).

Client to gateway::

    {"type": "chat", "id": "c1", "messages": [...], "max_tokens": 64, ...}   any other key is a chat parameter
    {"type": "cancel", "id": "c1"}
    {"type": "ping"}                                                       an application ping, for browsers

Gateway to client::

    {"type": "delta", "id": "c1", "content": "..."}                         "reasoning" too, when the server sends it
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Error codes, the stream client's typed errors first (qwenops.errors names the exception of each).
CODES: dict[str, str] = {
    "in_band_error": "the server reported an error inside the stream (its engine died or refused mid-answer)",
    "interrupted": "the stream from the server ended before its end: a cut connection or a restarting server",
    "unreachable": "the server could not be reached (stopped, restarting: `qwenops serve` is in BACKOFF)",
    "http_status": "the server answered with an HTTP error status; the message quotes it",
    "timeout": "the server sent nothing for longer than the read timeout",
    "bad_request": "the frame or its parameters are not acceptable; the message names the field",
    "duplicate_id": "a chat with this id is still running on this connection",
    "too_many_chats": "this connection already runs its most chats at once",
    "overloaded": "the gateway already runs its most chats at once; retry later",
    "slow_reader": "the client read too slowly: the chat was cancelled so the gateway's memory stays bounded",
    "cancelled": "the client cancelled the chat",
    "shutting_down": "the gateway is stopping; the chat was cancelled or not started",
    "internal": "a bug in the gateway; the connection goes on",
}

# Keys a chat frame may not set: the gateway owns them (one model, always streamed, usage included).
_OWNED = {"model": "the gateway serves the one model it was started for",
          "stream": "the gateway always streams", "stream_options": "the gateway always asks for usage",
          "n": "one answer per chat (send several chats instead)"}
MAX_ID_CHARS = 128


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


def _finite(value: Any) -> bool:
    """No NaN or Infinity anywhere (JSON has neither; Python's parser accepts them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_frame(text: str) -> Frame:
    """The typed frame of one text message, or `FrameError` naming what is wrong."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"the frame is not JSON ({_short(exc)})") from None
    if not isinstance(data, dict):
        raise FrameError(f"the frame must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    frame_id = data.get("id")
    known_id = frame_id if isinstance(frame_id, str) and 0 < len(frame_id) <= MAX_ID_CHARS else None
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
    return messages


def _params(data: Mapping[str, Any], frame_id: str) -> dict[str, Any]:
    params = {key: value for key, value in data.items() if key not in ("type", "id", "messages")}
    for key, why in _OWNED.items():
        if key in params and not (key == "n" and params[key] == 1):
            raise FrameError(f"{key}: not a chat parameter here ({why})", id=frame_id)
    for key, value in params.items():
        if not _finite(value):
            raise FrameError(f"{key}: NaN and Infinity are not JSON numbers", id=frame_id)
    return params


def _short(value: object, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------- out


def dumps(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def delta(chat_id: str, content: str, reasoning: str = "") -> str:
    frame: dict[str, Any] = {"type": "delta", "id": chat_id, "content": content}
    if reasoning:
        frame["reasoning"] = reasoning
    return dumps(frame)


def done(chat_id: str, finish_reason: str | None, usage: Mapping[str, int] | None) -> str:
    return dumps({"type": "done", "id": chat_id, "finish_reason": finish_reason, "usage": usage})


def error(chat_id: str | None, code: str, message: str) -> str:
    assert code in CODES, code  # every code is documented
    return dumps({"type": "error", "id": chat_id, "code": code, "message": message})


PONG = dumps({"type": "pong"})
