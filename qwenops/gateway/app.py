"""The gateway as an ASGI app: `/ws/chat` relays chats to vLLM's streamed chat completions.

Async end to end: each chat is one asyncio task reading `qwenops.stream.astream_chat` over one shared
`httpx.AsyncClient`, so a slow answer never holds up another connection's frames. What a connection
sends goes through its `Outbox` (bounded in bytes, one writer task), so a client that stops reading
costs at most `send_queue_bytes` before its chats are cancelled. Cancelling a chat's task closes its
upstream response, which is how vLLM learns to abort the request.

A server that restarts under `qwenops serve`: an answer it cut is resumed by the stream library from its
token ids (one `resumed` frame, then the deltas go on); a chat that finds it unreachable waits in a
bounded queue (`queue_size` chats, each at most `queue_deadline_s`) while one probe polls `/health` and
`/v1/models`, then is sent. A FATAL that serve records (config.ServeRecords) ends every chat that began before
it `interrupted`, with the supervisor's cause. `/metrics` serves the counters of metrics.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from qwenops.errors import (
    BadInputError,
    HTTPStatusError,
    InBandError,
    QwenopsError,
    StreamError,
    StreamInterrupted,
    StreamTimeout,
    UnreachableError,
)
from qwenops.gateway import protocol
from qwenops.gateway.config import Fatal, GatewayConfig, ServeRecords
from qwenops.gateway.metrics import GatewayMetrics
from qwenops.net import proxy_allowed
from qwenops.untrusted import mask_url, printable

if TYPE_CHECKING:
    import httpx
    from starlette.requests import Request

log = logging.getLogger("qwenops.gateway")

SUBPROTOCOL = "qwenops.v1"
BEARER_PREFIX = "bearer."  # a browser's token: new WebSocket(url, ["qwenops.v1", "bearer." + token])
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
POLL_S = 0.5  # how often the readiness probe and the FATAL watch look
PROBE_TIMEOUT_S = 5.0


# The stream client's typed errors, most specific first: a 400 is the client's parameters.
_ERROR_CODES: tuple[tuple[type[QwenopsError], str], ...] = (
    (InBandError, "in_band_error"),
    (StreamTimeout, "timeout"),
    (UnreachableError, "unreachable"),  # NotHTTPError too: something else answers on that port
    (BadInputError, "bad_request"),
    (StreamInterrupted, "interrupted"),
    (StreamError, "interrupted"),  # streams that were not streams: runaway, not an event stream
)


def error_code(exc: QwenopsError) -> str:
    """The protocol's code for one of the stream client's typed errors."""
    if isinstance(exc, HTTPStatusError):
        return "bad_request" if exc.status_code == 400 else "http_status"
    return next((code for kind, code in _ERROR_CODES if isinstance(exc, kind)), "internal")


# Where the gateway's WebSocket protocol (run.guarded_ws_protocol) leaves itself in a connection's ASGI scope: its
# `writable` event says whether the client's socket takes bytes now.
WS_PROTOCOL_SCOPE_KEY = "qwenops.ws_protocol"


class _Cancelled(Exception):
    """Why a chat's task was cancelled: the code and message of its one terminal frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Stats:
    connections: int = 0
    chats: int = 0
    chats_started: int = 0
    chats_done: int = 0
    chats_failed: int = 0


class Outbox:
    """Frames waiting for one client, in order, bounded in bytes (`Connection._write` takes them).

    A delta that would take the queue past its bound is refused (the chat is then cancelled); a chat's
    one terminal frame is always taken, so every chat still ends with `done` or `error` and the queue
    grows past the bound by at most one small frame per chat.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.frames: deque[tuple[str, float | None]] = deque()  # (frame, when its server chunk arrived)
        self.bytes = 0
        self.ready = asyncio.Event()

    def put(self, frame: str, *, always: bool = False, arrived_s: float | None = None) -> bool:
        frame = protocol.sendable(frame)  # the one door to the client: no lone surrogate passes it
        size = len(frame)  # characters: within 4x of bytes, and cheap
        if not always and self.bytes + size > self.limit:
            return False
        self.frames.append((frame, arrived_s))
        self.bytes += size
        self.ready.set()
        return True


@dataclass
class Gateway:
    config: GatewayConfig
    http: httpx.AsyncClient | None = None
    stats: Stats = field(default_factory=Stats)
    connections: set[Connection] = field(default_factory=set)
    draining: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while no chat runs
    up: asyncio.Event = field(default_factory=asyncio.Event)  # set while the server is taken to be serving
    down: asyncio.Event = field(default_factory=asyncio.Event)  # the opposite, which the probe waits on
    waiting: int = 0  # chats in the queue for the server
    supervisor_checks: int = 0  # FATAL records read (the tests wait on it)
    last_up: float = field(default_factory=time.time)  # Unix seconds the server was last seen serving
    metrics: GatewayMetrics = field(init=False)
    records: ServeRecords | None = field(init=False)

    def __post_init__(self) -> None:
        from pathlib import Path

        self.idle.set()
        self.up.set()
        self.metrics = GatewayMetrics(self.queued_bytes)
        config = self.config
        self.records = (ServeRecords(Path(config.serve_state_dir), config.serve_profile)
                        if config.serve_state_dir and config.serve_profile else None)

    def queued_bytes(self) -> int:
        return sum(connection.outbox.bytes for connection in self.connections)

    # ----------------------------------------------------------------------------------- the server's state

    def server_down(self) -> None:
        if self.up.is_set():
            log.warning("the server %s is unreachable: chats wait for it (up to %d, %.0f s each)",
                        self.upstream_shown, self.config.queue_size, self.config.queue_deadline_s)
        self.up.clear()
        self.down.set()

    def server_up(self) -> None:
        self.last_up = time.time()
        if not self.up.is_set():
            log.info("the server %s is ready again: %d waiting chats go on", self.upstream_shown, self.waiting)
        self.down.clear()
        self.up.set()

    async def ready_now(self) -> bool:
        """One readiness probe, as the stream library's resume makes it: /health 200 and /v1/models
        listing the model."""
        from qwenops.stream.resume import server_ready

        assert self.http is not None
        config = self.config
        headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"} if config.api_key else {}
        return await server_ready(self.http, config.upstream, config.model, headers, PROBE_TIMEOUT_S)

    async def probe(self) -> None:
        """While chats wait for a server that is down: poll it until it is ready, then let them go."""
        while True:
            await self.down.wait()
            if self.waiting and await self.ready_now():
                self.server_up()
                continue
            await asyncio.sleep(POLL_S)

    async def watch_supervisor(self) -> None:
        """While chats run or wait: a FATAL that serve records ends each chat that began before it."""
        assert self.records is not None
        while True:
            await asyncio.sleep(POLL_S)
            if not self.stats.chats:
                continue
            fatal = await asyncio.to_thread(self.records.fatal)
            self.supervisor_checks += 1
            if fatal is None:
                continue
            for connection in list(self.connections):
                connection.supervisor_gave_up(fatal)

    def gave_up_message(self, fatal: Fatal) -> str:
        at = time.strftime("%H:%M:%S", time.localtime(fatal.at))
        profile = self.records.profile if self.records is not None else "?"
        return (f"qwenops serve --profile {profile} gave up at {at} (FATAL: {fatal.cause}); the server is not "
                "coming back until it is started again (qwenops troubleshoot)")

    @property
    def upstream_shown(self) -> str:
        return mask_url(self.config.upstream)

    def chat_started(self) -> None:
        self.stats.chats += 1
        self.stats.chats_started += 1
        self.idle.clear()

    def chat_ended(self, ok: bool, code: str | None, *, resumed: bool) -> None:
        self.metrics.chat_ended(None if ok else code or "internal", resumed=resumed)
        self.stats.chats -= 1
        if ok:
            self.stats.chats_done += 1
        else:
            self.stats.chats_failed += 1
        if self.stats.chats == 0:
            self.idle.set()

    async def drain(self) -> None:
        """SIGTERM: take no new connection or chat, let running chats finish within `drain_s`, then
        cancel the rest (error `shutting_down`) and close every connection with 1001."""
        self.draining = True
        log.info("draining: %d chats running, up to %.0f s", self.stats.chats, self.config.drain_s)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout=self.config.drain_s)
        for connection in list(self.connections):
            await connection.close(CLOSE_GOING_AWAY, "gateway shutting down")


class Connection:
    def __init__(self, gateway: Gateway, websocket: WebSocket, *, text_mode: bool) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.websocket = websocket
        self.text_mode = text_mode
        self.outbox = Outbox(self.config.send_queue_bytes)
        self.chats: dict[str, asyncio.Task[None]] = {}
        self.why: dict[str, tuple[str, str]] = {}  # chat id -> (code, message) of a cancellation
        self.since: dict[str, float] = {}  # chat id -> Unix seconds it began (for a FATAL recorded after)
        self.prompts: asyncio.Queue[str] = asyncio.Queue(self.config.max_chats_per_connection)
        self.closing = False
        self.unread = False  # the client sends but does not read its answers
        self.counter = 0
        client = websocket.client
        self.who = f"{client.host}:{client.port}" if client else "?"
        ws_protocol = websocket.scope.get(WS_PROTOCOL_SCOPE_KEY)
        # Set while the client's socket takes bytes (uvicorn's flow control): a delta is then sent from its chat's
        # task, not handed to the writer (Connection._relay). None: another protocol, every frame goes by the writer.
        self.writable: asyncio.Event | None = getattr(ws_protocol, "writable", None)

    # ----------------------------------------------------------------------------------- lifetime

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        texts = asyncio.create_task(self._text_chats()) if self.text_mode else None
        try:
            await self._read()
        finally:
            self.closing = True
            await self._cancel_all("cancelled", "the client left")
            for task in (writer, texts):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def close(self, code: int, reason: str) -> None:
        """Cancel this connection's chats, send what is queued (their terminal frames), then close."""
        if self.closing:
            return
        self.closing = True
        await self._cancel_all("shutting_down" if code == CLOSE_GOING_AWAY else "cancelled", reason)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._flushed(), timeout=2.0)
        # A client that does not read never takes the close frame either: give up on it after 2 s and
        # return, and uvicorn closes the socket.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(code, reason), timeout=2.0)

    async def _flushed(self) -> None:
        while self.outbox.frames:
            await asyncio.sleep(0.01)

    async def _cancel_all(self, code: str, message: str) -> None:
        tasks = list(self.chats.items())
        for chat_id, _task in tasks:
            self._cancel(chat_id, code, message)
        for _chat_id, task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _cancel(self, chat_id: str, code: str, message: str) -> None:
        task = self.chats.get(chat_id)
        if task is not None and chat_id not in self.why:
            self.why[chat_id] = (code, message)
            task.cancel()

    def supervisor_gave_up(self, fatal: Fatal) -> None:
        """End every chat that began before the FATAL: the server it waits for is not coming back."""
        for chat_id, since in list(self.since.items()):
            if since <= fatal.at:
                self._cancel(chat_id, "interrupted", self.gateway.gave_up_message(fatal))

    async def _write(self) -> None:
        """The one writer: a client that does not read blocks this task only. Woken once for whatever the
        chats queued since it last ran, it sends it all before it waits again (a send returns without
        yielding while the client's socket takes the bytes)."""
        outbox, observe, clock = self.outbox, self.gateway.metrics.latency.observe, time.perf_counter
        frames, ready, send = outbox.frames, outbox.ready, self.websocket.send_text
        while True:
            if not frames:
                ready.clear()
                await ready.wait()
                continue
            frame, arrived_s = frames.popleft()
            outbox.bytes -= len(frame)
            try:
                await send(frame)
            except Exception:  # the client left; the reader sees the disconnect
                return
            if arrived_s is not None:
                observe(clock() - arrived_s)

    async def _read(self) -> None:
        while not self.closing:
            try:
                message = await asyncio.wait_for(self.websocket.receive(), timeout=self.config.idle_timeout_s)
            except asyncio.TimeoutError:
                if self.chats or not self.prompts.empty():
                    continue
                await self.close(1000, "idle timeout")
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            try:
                self._receive(message.get("text"))
            except Exception as exc:  # a bug here must not end the connection, its chats, or flood the log
                log.error("a frame from %s was not handled: %s", self.who, _one_line(exc),
                          exc_info=log.isEnabledFor(logging.DEBUG))
                self._reply_error(None, "internal", f"{type(exc).__name__} in the gateway (logged)")
            if self.unread:
                await self.close(CLOSE_POLICY, "the client sends frames but does not read the answers")
                return

    def _receive(self, text: str | None) -> None:
        limit = self.config.max_frame_bytes
        if text is None:
            self._reply_error(None, "bad_request", "binary frames are not accepted: send "
                              + ("the prompt as a text frame" if self.text_mode else "JSON text frames"))
        elif len(text) > limit or len(text.encode()) > limit:
            self._reply_error(None, "bad_request", f"frame: {len(text.encode())} bytes, more than the {limit} allowed")
        elif self.text_mode:
            self._prompt(text)
        else:
            self._frame(text)

    # ----------------------------------------------------------------------------------- frames

    def _reply(self, frame: str) -> None:
        """An answer to a frame, not a chat's end: bounded like deltas, since a client could send bad
        frames without ever reading the answers. One that does not fit ends the connection (1008)."""
        if not self.outbox.put(frame):
            self.unread = True

    def _reply_error(self, chat_id: str | None, code: str, message: str) -> None:
        """An error that answers a frame, in the connection's mode: an error frame, or `[error CODE] ...`."""
        self._reply(_text_error(code, message) if self.text_mode else protocol.error(chat_id, code, message))

    def _frame(self, text: str) -> None:
        try:
            frame = protocol.parse_frame(text)
        except protocol.FrameError as exc:
            self._reply_error(exc.id, exc.code, exc.message)
            return
        if isinstance(frame, protocol.Ping):
            self._reply(protocol.PONG)
        elif isinstance(frame, protocol.Cancel):
            # a chat that already ended has sent its one terminal frame: nothing to do
            self._cancel(frame.id, "cancelled", "cancelled by the client")
        else:
            refusal = self._refusal(frame.id)
            if refusal is not None:
                self._reply_error(frame.id, *refusal)
                return
            self._start(frame.id, frame.messages, frame.params)

    def _refusal(self, chat_id: str) -> tuple[str, str] | None:
        if self.gateway.draining:
            return "shutting_down", "the gateway is stopping and takes no new chat"
        if chat_id in self.chats:
            return "duplicate_id", f"id: a chat with id {chat_id!r} is still running on this connection"
        if len(self.chats) >= self.config.max_chats_per_connection:
            return "too_many_chats", (f"this connection already runs {len(self.chats)} chats "
                                      f"(--max-chats-per-connection {self.config.max_chats_per_connection})")
        if self.gateway.stats.chats >= self.config.max_chats:
            return "overloaded", f"the gateway already runs {self.gateway.stats.chats} chats (--max-chats); retry"
        return None

    def _prompt(self, text: str) -> None:
        """Text mode: a text frame is a user prompt, answered in order, content only."""
        if not text.strip():
            self._reply_error(None, "bad_request", "the prompt is empty")
            return
        try:
            self.prompts.put_nowait(text)
        except asyncio.QueueFull:
            self._reply_error(None, "too_many_chats", f"{self.config.max_chats_per_connection} prompts already "
                              "wait on this connection")

    async def _text_chats(self) -> None:
        while True:
            prompt = await self.prompts.get()
            self.counter += 1
            chat_id = f"text-{self.counter}"
            refusal = self._refusal(chat_id)
            if refusal is not None:
                self._reply_error(chat_id, *refusal)
                continue
            task = self._start(chat_id, [{"role": "user", "content": prompt}], {})
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)

    # ----------------------------------------------------------------------------------- chats

    def _start(self, chat_id: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> asyncio.Task[None]:
        self.gateway.chat_started()
        self.since[chat_id] = time.time()
        task = asyncio.create_task(self._chat(chat_id, messages, params), name=f"chat {chat_id}")
        self.chats[chat_id] = task
        return task

    def _send_terminal(self, chat_id: str, code: str | None, message: str, finish: str | None = None,
                       usage: dict[str, int] | None = None) -> None:
        if self.text_mode:
            if code is not None:
                self.outbox.put(_text_error(code, message), always=True)
            return
        frame = protocol.done(chat_id, finish, usage) if code is None else protocol.error(chat_id, code, message)
        self.outbox.put(frame, always=True)

    async def _chat(self, chat_id: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> None:
        ok = False
        code: str | None = None
        sent = _Sent()
        try:
            finish, usage = await self._relay_when_ready(chat_id, messages, params, sent)
            self._send_terminal(chat_id, None, "", finish, usage)
            ok = True
        except asyncio.CancelledError:
            code, message = self.why.get(chat_id, ("cancelled", "cancelled"))
            if not self.closing or code == "shutting_down":
                self._send_terminal(chat_id, code, message)
        except _Cancelled as exc:
            code = exc.code
            self._send_terminal(chat_id, exc.code, exc.message)
        except QwenopsError as exc:
            code = error_code(exc)
            self._send_terminal(chat_id, code, _with_resume_hint(exc))
        except Exception as exc:  # a bug here must not end the connection or the other chats
            log.error("chat %r failed: %s", chat_id, _one_line(exc), exc_info=log.isEnabledFor(logging.DEBUG))
            code = "internal"
            self._send_terminal(chat_id, "internal", f"{type(exc).__name__} in the gateway (logged)")
        finally:
            self.chats.pop(chat_id, None)
            self.why.pop(chat_id, None)
            self.since.pop(chat_id, None)
            self.gateway.chat_ended(ok, code, resumed=sent.resumed > 0)

    # ----------------------------------------------------------------------------------- a server that restarts

    async def _relay_when_ready(self, chat_id: str, messages: list[dict[str, Any]], params: dict[str, Any],
                                sent: _Sent) -> tuple[str | None, dict[str, int] | None]:
        """The chat relayed once the server is ready: a chat that finds it unreachable (before anything was
        sent to the client) waits in the queue, then is sent again, all within one `queue_deadline_s`."""
        deadline: float | None = None
        while True:
            if not self.gateway.up.is_set():
                deadline = deadline if deadline is not None else time.monotonic() + self.config.queue_deadline_s
                await self._wait_for_server(deadline, None)
            try:
                return await self._relay(chat_id, messages, params, sent)
            except (UnreachableError, HTTPStatusError) as exc:
                if sent.frames or not _restarting(exc) or not self.config.queue_size:
                    raise
                if isinstance(exc, HTTPStatusError) and await self.gateway.ready_now():
                    raise  # a server that is up refused this request itself: its status, not a restart
                self.gateway.server_down()
                deadline = deadline if deadline is not None else time.monotonic() + self.config.queue_deadline_s
                await self._wait_for_server(deadline, exc)

    async def _wait_for_server(self, deadline: float, exc: QwenopsError | None) -> None:
        """Wait in the queue until the server is ready (the probe says so) or DEADLINE (monotonic) passes."""
        gateway, config = self.gateway, self.config
        # The record is a file (read bounded, 4 KiB): read in a thread, as the supervisor watch reads it, so
        # a slow disk never stalls the loop and every other chat's frames with it.
        fatal = (await asyncio.to_thread(gateway.records.gave_up_since, gateway.last_up)
                 if gateway.records is not None else None)
        if fatal is not None:  # the supervisor gave up since the server last answered: nothing to wait for
            raise _Cancelled("unreachable", gateway.gave_up_message(fatal))
        if gateway.waiting >= config.queue_size:
            why = exc.message if exc is not None else "the server is unreachable or restarting"
            raise _Cancelled("overloaded", f"{why}; {gateway.waiting} chats already wait for it "
                             f"(--queue-size {config.queue_size}); retry later")
        gateway.waiting += 1
        try:
            await asyncio.wait_for(gateway.up.wait(), timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            said = f"; {await asyncio.to_thread(gateway.records.describe)}" if gateway.records is not None else ""
            raise _Cancelled("interrupted", f"the server {gateway.upstream_shown} was not ready again within "
                             f"{config.queue_deadline_s:g} s (--queue-deadline){said}") from None
        finally:
            gateway.waiting -= 1

    async def _relay(self, chat_id: str, messages: list[dict[str, Any]], params: dict[str, Any],
                     sent: _Sent) -> tuple[str | None, dict[str, int] | None]:
        from qwenops.stream.client import Timeouts, astream_chat
        from qwenops.stream.resume import Resume

        config = self.config
        # One deadline for a server that is not there: queued, or resuming a cut answer.
        resume = Resume(attempts=3, deadline_s=config.queue_deadline_s, ready_s=config.queue_deadline_s,
                        poll_s=POLL_S) if config.resume else None
        finish: str | None = None
        usage: dict[str, int] | None = None
        limit = protocol.max_tokens(params)
        if limit is None:
            limit = sys.maxsize  # the server's own limit: no count reaches it
        deltas_sent = 0
        # The whole answer's deadline, checked against each chunk's arrival: a comparison per chunk, where the
        # stream library's total deadline would put a timer on every socket read (docs/benchmarks.md). Silence
        # is the read timeout's; waiting to resume is the queue deadline's.
        end_s = time.perf_counter() + config.chat_deadline_s
        text_mode, put, head = self.text_mode, self.outbox.put, protocol.delta_head(chat_id)
        frames, writable, send = self.outbox.frames, self.writable, self.websocket.send_text
        observe, clock = self.gateway.metrics.latency.observe, time.perf_counter
        burst_s = -1.0  # the arrival time of the delta before: the deltas of one read share it
        # aclosing: a chat that ends here (slow_reader) closes the upstream response now, so vLLM aborts the
        # request now; a generator merely dropped is closed only when the garbage collector gets to it.
        async with contextlib.aclosing(astream_chat(
            messages, base_url=config.upstream, model=config.model,
            api_key=config.api_key.get_secret_value() if config.api_key else None,
            extra_body=params, timeouts=Timeouts(read_s=config.read_timeout_s), client=self.gateway.http,
            resume=resume,
        )) as deltas:
            async for chunk in deltas:
                if chunk.arrived_s > end_s:
                    raise _Cancelled("timeout", f"the answer did not finish within {config.chat_deadline_s:g} s "
                                     "(--chat-deadline); the chat was stopped")
                if not sent.frames:
                    self.gateway.server_up()  # it answers
                if chunk.resumed is not None:
                    # Text mode shows only the pause; a JSON client gets where the answer went on.
                    sent.resumed += 1
                    if not self.text_mode and not self.outbox.put(protocol.resumed(
                            chat_id, chunk.resumed.after_tokens, chunk.resumed.gap_ms)):
                        raise _Cancelled("slow_reader", f"more than {config.send_queue_bytes} bytes waited for "
                                         "this client; the chat was cancelled")
                    continue
                sent.frames += 1
                content, reasoning = chunk.content, chunk.reasoning_content
                if content or reasoning:
                    # Each delta carries at least one token (vLLM sends a chunk per step, or several steps' in
                    # one when its client falls behind), so more deltas than max_tokens is a server that ran
                    # past it, one not vLLM or a bug: stopped here, and aclosing hangs up on it.
                    deltas_sent += 1
                    if deltas_sent > limit:
                        log.warning("chat %r: the server sent more than max_tokens (%d); stopped", chat_id, limit)
                        return "length", None
                    # Text mode is read on a terminal (websocat): the model's words lose every control sequence
                    # (an OSC 52 clipboard write, a screen clear: audit 7), as its error lines do. Per delta is
                    # enough: the ESC that starts a sequence split across deltas is dropped wherever it falls.
                    frame = printable(content) if text_mode else protocol.delta(chat_id, content, reasoning, head=head)
                    arrived_s = chunk.arrived_s
                    if frame and arrived_s != burst_s and writable is not None and writable.is_set() and not frames:
                        # The first delta of a read, nothing waiting for this client, its socket taking bytes: sent
                        # from this task, now. The send returns without yielding (uvicorn writes to the transport),
                        # so no frame of the writer can pass it; a hop to the writer task cost every delta the rest of
                        # its event-loop turn, behind every other chat's read (1-2 ms at 64 paced chats). The rest of
                        # a burst (deltas of one read share its arrival time) goes by the writer, as before: sent one
                        # by one from here, a burst cost more CPU (docs/benchmarks.md).
                        with contextlib.suppress(Exception):  # the client left: the reader sees the disconnect
                            await send(protocol.sendable(frame))
                            observe(clock() - arrived_s)
                    elif frame and not put(frame, arrived_s=arrived_s):
                        raise _Cancelled("slow_reader", f"more than {config.send_queue_bytes} bytes waited for "
                                         "this client; the chat was cancelled")
                    burst_s = arrived_s
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                if chunk.usage is not None:
                    usage = {"prompt_tokens": chunk.usage.prompt_tokens,
                             "completion_tokens": chunk.usage.completion_tokens,
                             "total_tokens": chunk.usage.total_tokens}
        return finish, usage


@dataclass
class _Sent:
    """What a chat has received from the server so far (deltas of any kind) and how often it was resumed."""

    frames: int = 0
    resumed: int = 0


def _restarting(exc: QwenopsError) -> bool:
    """A refusal that a restarting server gives, before any answer: nothing listens on the port (not
    something else answering there), or a 5xx."""
    from qwenops.errors import NotHTTPError

    if isinstance(exc, HTTPStatusError):
        return exc.status_code >= 500
    return isinstance(exc, UnreachableError) and not isinstance(exc, NotHTTPError)


def _with_resume_hint(exc: QwenopsError) -> str:
    """The error's message, with why it was not resumed when the stream library tried (its hint says)."""
    hint = exc.hint or ""
    at = hint.find("not resumed:")
    if at < 0 or not isinstance(exc, (StreamError, UnreachableError)):
        return exc.message
    return f"{exc.message} ({hint[at:]})"


# --------------------------------------------------------------------------------------------- handshake


def _presented_token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    offered: list[str] = websocket.scope.get("subprotocols", [])
    for value in offered:
        if value.startswith(BEARER_PREFIX):
            return value[len(BEARER_PREFIX):]
    return None


def token_ok(config: GatewayConfig, presented: str | None) -> bool:
    if config.token is None:
        return True
    if presented is None:
        return False
    # constant time: a byte-by-byte compare would tell an attacker how much of a guess was right
    return hmac.compare_digest(presented.encode(), config.token.get_secret_value().encode())


def origin_ok(config: GatewayConfig, websocket: WebSocket) -> bool:
    """No Origin (not a browser): allowed, the token guards it. A browser: its own origin or a listed one."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if "*" in config.allowed_origins or origin in config.allowed_origins:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # "http://[::1": not a URL, so no browser's origin
        return False
    # A browser's Origin is exactly scheme://host[:port]: a path, a query or another scheme is no page's origin
    # (`file://HOST`, `http://HOST/x`: audit 10 noted that the host alone was compared).
    if parts.scheme not in ("http", "https") or parts.path or parts.query or parts.fragment or parts.username:
        return False
    return parts.netloc.lower() == websocket.headers.get("host", "").lower()


def host_values(connection: WebSocket | Request) -> list[str]:
    """Every Host line of the request (ASGI keeps repeated headers; Starlette's .get shows the first)."""
    return [value.decode("latin-1") for name, value in connection.scope.get("headers", ()) if name == b"host"]


def _text_error(code: str, message: str) -> str:
    """An error in text mode: a line a terminal client (websocat) shows as it is, so the message, which can
    quote the upstream's own words, loses every control sequence (JSON mode escapes them instead)."""
    return printable(f"[error {code}] {message}", keep_newlines=False)


def _foreign_host(request: Request) -> PlainTextResponse | None:
    """403 for an HTTP request whose Host is not the gateway's (the handshake's rule): a page that rebinds
    a name to 127.0.0.1 must not read /healthz or /metrics either."""
    if request.app.state.gateway.config.host_allowed(host_values(request)):
        return None
    return PlainTextResponse("this Host is not the gateway's: connect by a loopback address, localhost, or a "
                             "name given to --allow-host\n", status_code=403)


def _shown(value: object) -> str:
    """A header value in a log line: quoted and escaped (no line breaks or terminal controls), bounded."""
    text = repr(value)
    return text if len(text) <= 100 else text[:99] + "…"


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


async def chat_socket(websocket: WebSocket) -> None:
    gateway: Gateway = websocket.app.state.gateway
    config = gateway.config
    client = websocket.client
    who = f"{client.host}:{client.port}" if client else "?"
    if not token_ok(config, _presented_token(websocket)):
        log.warning("refused %s: no or wrong token", who)  # never the token itself
        await websocket.close(CLOSE_POLICY)
        return
    hosts = host_values(websocket)
    if not config.host_allowed(hosts):
        log.warning("refused %s: Host %s is not this gateway's (DNS rebinding?); --allow-host NAME allows a name",
                    who, _shown(hosts[0] if len(hosts) == 1 else hosts))
        await websocket.send_denial_response(PlainTextResponse(
            "this Host is not the gateway's: connect by a loopback address, localhost, or a name given to "
            "--allow-host\n", status_code=403))
        return
    if not origin_ok(config, websocket):
        log.warning("refused %s: origin %s not allowed", who, _shown(websocket.headers.get("origin")))
        await websocket.close(CLOSE_POLICY)
        return
    if gateway.draining:  # a load balancer's retry goes to another instance
        await websocket.send_denial_response(PlainTextResponse("the gateway is draining\n", status_code=503))
        return
    offered = websocket.scope.get("subprotocols", ())
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    connection = Connection(gateway, websocket, text_mode=websocket.query_params.get("mode") == "text")
    gateway.connections.add(connection)
    gateway.stats.connections += 1
    gateway.metrics.connections.inc()
    try:
        await connection.run()
    finally:
        gateway.connections.discard(connection)
        gateway.stats.connections -= 1
        gateway.metrics.connections.dec()


# --------------------------------------------------------------------------------------------- HTTP


# The page's own headers: its inline script and style, and a WebSocket to its own origin ('self' covers ws:/wss:
# of the same host in CSP 3), nothing else; no other site may frame it (a framing page could steer a user into
# typing the token or sending prompts), sniff it as something else, or learn its URL through a referrer.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def page(request: Request) -> Response:
    if (refused := _foreign_host(request)) is not None:
        return refused
    html: str = request.app.state.page  # read once, by create_app: no file read on the loop per request
    return HTMLResponse(html, headers=PAGE_HEADERS)


async def healthz(request: Request) -> Response:
    if (refused := _foreign_host(request)) is not None:
        return refused
    gateway: Gateway = request.app.state.gateway
    queued = gateway.queued_bytes()
    return JSONResponse({
        "status": "draining" if gateway.draining else "ok",
        "upstream": gateway.upstream_shown,
        "connections": gateway.stats.connections,
        "chats": gateway.stats.chats,
        "chats_started": gateway.stats.chats_started,
        "chats_done": gateway.stats.chats_done,
        "chats_failed": gateway.stats.chats_failed,
        "queued_bytes": queued,
        "waiting": gateway.waiting,
        "server": "ready" if gateway.up.is_set() else "down",
    }, status_code=503 if gateway.draining else 200)


async def metrics(request: Request) -> Response:
    """Prometheus' text format. With a token set, the scrape must present it (`Authorization: Bearer`,
    Prometheus' `authorization` scrape setting): a gateway with a token is reachable beyond loopback, and
    the counters tell how it is used."""
    from prometheus_client import CONTENT_TYPE_LATEST

    if (refused := _foreign_host(request)) is not None:
        return refused
    gateway: Gateway = request.app.state.gateway
    if gateway.config.token is not None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token_ok(gateway.config, value.strip() or None):
            return PlainTextResponse("/metrics needs the gateway's token: Authorization: Bearer TOKEN\n",
                                     status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return Response(gateway.metrics.text(), media_type=CONTENT_TYPE_LATEST)


def create_app(config: GatewayConfig) -> Starlette:
    import httpx

    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=config.max_chats, max_keepalive_connections=config.max_chats)
        async with httpx.AsyncClient(limits=limits, trust_env=proxy_allowed(config.upstream)) as http:
            gateway.http = http
            tasks = [asyncio.create_task(gateway.probe(), name="gateway probe")]
            if gateway.records is not None:
                tasks.append(asyncio.create_task(gateway.watch_supervisor(), name="gateway supervisor watch"))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    app = Starlette(routes=[Route("/", page), Route("/healthz", healthz), Route("/metrics", metrics),
                            WebSocketRoute("/ws/chat", chat_socket)], lifespan=lifespan)
    app.state.gateway = gateway
    app.state.page = resources.files("qwenops.gateway").joinpath("page.html").read_text(encoding="utf-8")
    return app
