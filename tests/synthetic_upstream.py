"""A synthetic vLLM chat server on a real socket: streams `chat.completion.chunk` events as fast as the
socket takes them, for the gateway's tests and benchmarks/gateway.py.

The last user message picks the behaviour (the gateway passes messages through untouched):
  "tokens N"       N content deltas "t0 ", "t1 ", ..., then the finish chunk, usage and [DONE]
  "stamp N [S]"    N deltas whose content is time.monotonic_ns() when written (the benchmark's clock),
                   S seconds apart (default: as fast as the socket takes them)
  "slow N S"       N deltas, S seconds apart
  "big N SIZE"     N deltas of SIZE characters each (to outrun a client that does not read)
  "hang"           one delta, then nothing until the client leaves
  "empty"          chunks with empty content every 10 ms until the client leaves (a server that never ends)
  "inband"         one delta, then vLLM's dead-engine error inside the 200 stream
  "cut"            one delta, then the connection closes without [DONE]
  "http400"        400 with vLLM's error body
  "http500"        500 with vLLM's error body (the request's own failure: /health stays 200)
  "surrogate"      one delta holding a lone surrogate (JSON "\\ud800": what a broken server may send), then "tokens 1"
  "escapes"        deltas holding terminal control sequences (OSC 52, a screen clear, one split across deltas,
                   U+202E), then "tokens 1"
  "model N"        N tokens of the scripted model below, as vLLM sends them (token ids when the request asks
                   `return_token_ids`), finish_reason "length", usage, [DONE]: the uncut reference
  "restart N K"    the same answer, cut after K tokens: the connection closes and the server goes down
                   (its port refuses connections, as while `qwenops serve` restarts vLLM) until `come_back()`
  anything else    "tokens 3"
Each request's fate is counted: `active` (streaming now), `finished`, `aborted` (the client closed
mid-stream), and the bodies received, so a test can see what the gateway sent and that it hung up.

As vLLM 0.32 does for resumption (qwenops/stream/resume.py): `GET /health` (200), `GET /v1/models` (lists
`models`), and `POST /v1/completions` with `prompt` as token ids, streamed as `text_completion` chunks
with `token_ids`. The scripted model's next token depends on every id before it (as in
tests/unit/test_stream_resume.py), so an answer continued from the ids delivered equals the uncut one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    active: int = 0
    finished: int = 0
    aborted: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # every POST's path, in order
    cuts: int = 0  # "restart" answers cut


PROMPT_IDS = [1, 2, 3]


def next_token(context: list[int]) -> int:
    """The scripted model: the next id depends on every id before it, as a real model's does."""
    return (sum(context) * 7 + len(context)) % 40 + 10


def piece(token: int) -> str:
    return f"w{token} "


def model_answer(count: int, context: list[int] | None = None) -> list[int]:
    """COUNT tokens the scripted model answers after CONTEXT (the prompt's ids by default)."""
    context = list(PROMPT_IDS if context is None else context)
    out: list[int] = []
    for _ in range(count):
        out.append(next_token(context + out))
    return out


def model_text(count: int) -> str:
    return "".join(piece(token) for token in model_answer(count))


def _chunk(content: str | None = None, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-synthetic", "object": "chat.completion.chunk", "model": "synthetic",
                            "choices": []}
    if usage is not None:
        body["usage"] = usage
    else:
        delta = {} if content is None else {"content": content}
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps(body).encode() + b"\n\n"


_ROLE = (b'data: {"id":"chatcmpl-synthetic","object":"chat.completion.chunk","model":"synthetic","choices":'
         b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n')


class SyntheticUpstream:
    def __init__(self, port: int = 0, models: tuple[str, ...] = ("m",)) -> None:
        self.counters = Counters()
        self.port = port
        self.models = models
        self.down = False  # after a "restart" cut, until come_back()
        self.answer_tokens = 8  # the last "model"/"restart" answer's length: where a continuation ends by itself
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="synthetic-upstream")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SyntheticUpstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(self._listen())
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=2048, reuse_address=True)

    def _go_down(self) -> None:
        """Stop listening: new connections are refused, as while a supervisor restarts the server."""
        self.down = True
        if self._server is not None:
            self._server.close()

    def come_back(self) -> None:
        """Listen again on the same port (the restarted server), from the test's thread."""
        assert self._loop is not None

        async def listen() -> None:
            self._server = await self._listen()
            self.down = False

        asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        method, path, *_ = head.decode().split(" ", 2)
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
        length = int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))
        body = json.loads(await reader.readexactly(length)) if length else {}
        if self.down:  # a connection accepted just before the server went down
            return False
        if method == "GET":
            payload = b"" if path == "/health" else json.dumps(
                {"object": "list", "data": [{"id": name, "object": "model"} for name in self.models]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            await writer.drain()
            return True
        self.counters.bodies.append(body)
        self.counters.paths.append(path)
        if path == "/v1/completions":
            return await self._respond(writer, lambda: self._completion(writer, body))
        prompt = str(body.get("messages", [{}])[-1].get("content", ""))
        word, *args = prompt.split() or ["tokens"]
        if word in ("http400", "http500", "http400esc"):
            code, reason, message = ((400, b"Bad Request", "temperature must be non-negative, got -1.0")
                                     if word == "http400" else (500, b"Internal Server Error", "the request failed")
                                     if word == "http500" else (400, b"Bad Request", "bad \x1b[31mRED\x1b[0m\x07"))
            payload = json.dumps({"object": "error", "message": message, "type": "Error", "param": None,
                                  "code": code}).encode()
            writer.write(b"HTTP/1.1 " + str(code).encode() + b" " + reason
                         + b"\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            await writer.drain()
            return True
        if word in ("model", "restart"):
            return await self._respond(writer, lambda: self._model_chat(writer, body, word, args))
        return await self._respond(writer, lambda: self._empty(writer) if word == "empty"
                                   else self._stream(writer, word, args))

    async def _respond(self, writer: asyncio.StreamWriter, stream: Any) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Connection: close\r\n\r\n")
        self.counters.active += 1
        try:
            await stream()
            self.counters.finished += 1
        except (ConnectionError, asyncio.CancelledError):
            self.counters.aborted += 1
        finally:
            self.counters.active -= 1
        return False

    async def _model_chat(self, writer: asyncio.StreamWriter, body: dict[str, Any], word: str,
                          args: list[str]) -> None:
        """The scripted model's answer as vLLM's chat completions stream it; "restart": cut after K tokens."""
        count = int(args[0]) if args and args[0].isdigit() else 8
        self.answer_tokens = count
        cut = int(args[1]) if word == "restart" and len(args) > 1 else None
        ids = bool(body.get("return_token_ids"))
        base = {"id": "chatcmpl-synthetic", "object": "chat.completion.chunk", "model": body.get("model")}
        role: dict[str, Any] = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                     "finish_reason": None}]}
        if ids:
            role["prompt_token_ids"] = PROMPT_IDS
        writer.write(b"data: " + json.dumps(role).encode() + b"\n\n")
        tokens = model_answer(count)
        for index, token in enumerate(tokens):
            if index == cut:
                await writer.drain()
                self.counters.cuts += 1
                self._go_down()
                return  # the connection closes without the rest
            choice: dict[str, Any] = {"index": 0, "delta": {"content": piece(token)},
                                      "finish_reason": "length" if index == count - 1 else None}
            if ids:
                choice["token_ids"] = [token]
            writer.write(b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n")
            await writer.drain()
        usage = {"prompt_tokens": len(PROMPT_IDS), "completion_tokens": count, "total_tokens": len(PROMPT_IDS) + count}
        writer.write(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()

    async def _completion(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
        """`POST /v1/completions` from token ids, as vLLM streams it: the rest of the scripted answer."""
        prompt = [int(token) for token in body["prompt"]]
        count = int(body.get("max_tokens") or self.answer_tokens - (len(prompt) - len(PROMPT_IDS)))
        tokens = model_answer(count, prompt)
        base = {"id": "cmpl-synthetic", "object": "text_completion", "model": body.get("model")}
        for index, token in enumerate(tokens):
            choice: dict[str, Any] = {"index": 0, "text": piece(token), "token_ids": [token],
                                      "finish_reason": "length" if index == count - 1 else None}
            if index == 0:
                choice["prompt_token_ids"] = prompt
            writer.write(b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n")
            await writer.drain()
        usage = {"prompt_tokens": len(prompt), "completion_tokens": count, "total_tokens": len(prompt) + count}
        writer.write(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()

    async def _empty(self, writer: asyncio.StreamWriter) -> None:
        """A server that never ends: empty chunks until the client leaves (noticed by the next write)."""
        writer.write(_ROLE)
        while True:
            writer.write(_chunk(""))
            await writer.drain()
            await asyncio.sleep(0.01)
            if writer.transport.is_closing():
                raise ConnectionResetError

    async def _stream(self, writer: asyncio.StreamWriter, word: str, args: list[str]) -> None:
        count = int(args[0]) if args and args[0].isdigit() else 3
        writer.write(_ROLE)
        if word == "surrogate":
            writer.write(b'data: {"choices": [{"index": 0, "delta": {"content": "a\\ud800b"}, '
                         b'"finish_reason": null}]}\n\n')
            count = 1
        if word == "escapes":  # a model's answer that writes to a terminal: clipboard (OSC 52), clear, bidi
            for piece in ("a\x1b]52;c;aGk=\x07b", "\x1b[2J\x1b", "]0;title\x07c", "\u202ed\n"):
                writer.write(_chunk(piece))
            count = 1
        if word in ("hang", "inband", "cut"):
            writer.write(_chunk("t0 "))
            await writer.drain()
            if word == "inband":
                writer.write(b'data: {"error": {"object": "error", "message": "EngineCore encountered an issue",'
                             b' "type": "InternalServerError", "code": 500}}\n\ndata: [DONE]\n\n')
                await writer.drain()
                return
            if word == "cut":
                return
            while True:  # hang: the client's leaving is noticed by the next write
                await asyncio.sleep(0.05)
                if writer.transport.is_closing():
                    raise ConnectionResetError
                writer.write(b": keep-alive\n\n")
                await writer.drain()
        delay = float(args[1]) if word in ("slow", "stamp") and len(args) > 1 else 0.0
        for index in range(count):
            if word == "big":
                content = "x" * int(args[1])
            else:
                content = str(time.monotonic_ns()) if word == "stamp" else f"t{index} "
            writer.write(_chunk(content))
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        writer.write(_chunk(None, finish="length" if word == "stamp" else "stop"))
        writer.write(_chunk(usage={"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 5 + count}))
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()


@contextlib.contextmanager
def synthetic_upstream(port: int = 0, models: tuple[str, ...] = ("m",)) -> Iterator[SyntheticUpstream]:
    upstream = SyntheticUpstream(port, models).start()
    try:
        yield upstream
    finally:
        upstream.stop()
