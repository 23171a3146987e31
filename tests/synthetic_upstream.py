"""A synthetic vLLM chat server on a real socket: streams `chat.completion.chunk` events as fast as the
socket takes them, for the gateway's tests and benchmarks/gateway.py.

The last user message picks the behaviour (the gateway passes messages through untouched):
  "tokens N"       N content deltas "t0 ", "t1 ", ..., then the finish chunk, usage and [DONE]
  "stamp N [S]"    N deltas whose content is time.monotonic_ns() when written (the benchmark's clock),
                   S seconds apart (default: as fast as the socket takes them)
  "slow N S"       N deltas, S seconds apart
  "big N SIZE"     N deltas of SIZE characters each (to outrun a client that does not read)
  "hang"           one delta, then nothing until the client leaves
  "inband"         one delta, then vLLM's dead-engine error inside the 200 stream
  "cut"            one delta, then the connection closes without [DONE]
  "http400"        400 with vLLM's error body
  "surrogate"      one delta holding a lone surrogate (JSON "\\ud800": what a broken server may send), then "tokens 1"
  anything else    "tokens 3"
Each request's fate is counted: `active` (streaming now), `finished`, `aborted` (the client closed
mid-stream), and the bodies received, so a test can see what the gateway sent and that it hung up.
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
    def __init__(self, port: int = 0) -> None:
        self.counters = Counters()
        self.port = port
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
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=2048,
                                                                         reuse_address=True))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()

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
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
        length = int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))
        body = json.loads(await reader.readexactly(length)) if length else {}
        self.counters.bodies.append(body)
        prompt = str(body.get("messages", [{}])[-1].get("content", ""))
        word, *args = prompt.split() or ["tokens"]
        if word == "http400":
            payload = json.dumps({"object": "error", "message": "temperature must be non-negative, got -1.0",
                                  "type": "BadRequestError", "param": None, "code": 400}).encode()
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Connection: close\r\n\r\n")
        self.counters.active += 1
        try:
            await self._stream(writer, word, args)
            self.counters.finished += 1
        except (ConnectionError, asyncio.CancelledError):
            self.counters.aborted += 1
        finally:
            self.counters.active -= 1
        return False

    async def _stream(self, writer: asyncio.StreamWriter, word: str, args: list[str]) -> None:
        count = int(args[0]) if args and args[0].isdigit() else 3
        writer.write(_ROLE)
        if word == "surrogate":
            writer.write(b'data: {"choices": [{"index": 0, "delta": {"content": "a\\ud800b"}, '
                         b'"finish_reason": null}]}\n\n')
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
def synthetic_upstream(port: int = 0) -> Iterator[SyntheticUpstream]:
    upstream = SyntheticUpstream(port).start()
    try:
        yield upstream
    finally:
        upstream.stop()
