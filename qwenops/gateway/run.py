"""Run the gateway under uvicorn, with the drain on SIGTERM that uvicorn itself does not do.

uvicorn's own shutdown closes every WebSocket at once with 1012; a chat answering a user would be cut
mid-sentence on every deploy. Here the first SIGTERM (or Ctrl-C) drains: new connections and chats
are refused, running chats may finish within `drain_s`, the rest are cancelled with an `error` frame
(`shutting_down`) and every connection is closed with 1001 (going away); then uvicorn stops. A
second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from qwenops.gateway.config import GatewayConfig

if TYPE_CHECKING:
    import uvicorn


@dataclass(frozen=True)
class GatewayRun:
    """What one run of the gateway did, for the closing line and `--json`."""

    url: str
    upstream: str
    model: str
    token_required: bool
    chats_started: int
    chats_done: int
    chats_failed: int
    drained: bool


def ws_url(config: GatewayConfig) -> str:
    from qwenops.net import connect_host

    return f"ws://{connect_host(config.host)}:{config.port}/ws/chat"


class OneLine(logging.Filter):
    """uvicorn's protocol layer logs what a client did wrong with a traceback (an invalid UTF-8 text
    frame: six lines per frame, any client can send them): folded here into its one line, the exception
    named at its end. At --log-level debug the traceback stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not logging.getLogger("qwenops.gateway").isEnabledFor(logging.DEBUG):
            exc = record.exc_info[1]
            record.msg = " ".join(f"{record.getMessage()} ({type(exc).__name__}: {exc})".split())
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


def connection_cap() -> int:
    """GATEWAY_MAX_CONNECTIONS, or fewer where the soft file limit would run out first (every connection
    is a descriptor, and a gateway out of them cannot reach its upstream either)."""
    import resource

    from qwenops.untrusted import GATEWAY_MAX_CONNECTIONS, GATEWAY_SPARE_FDS

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return GATEWAY_MAX_CONNECTIONS
    return max(1, min(GATEWAY_MAX_CONNECTIONS, soft - GATEWAY_SPARE_FDS))


def guarded_http_protocol(header_deadline_s: float, max_connections: int, max_header_bytes: int) -> type:
    """uvicorn's HTTP protocol (its own choice: httptools, else h11) with the three bounds it lacks, for a
    gateway any client can reach before a token is checked (the check runs once a request's headers are in):
    - a request's headers must arrive within HEADER_DEADLINE_S of the connection, or of the first byte after
      the last request's head (on a kept-alive connection, or pipelined behind a response still being sent);
      else the connection is closed. uvicorn arms no timer before a request's headers (its keep-alive timer runs
      only between requests, and any byte cancels it).
    - a request's line and headers may take at most MAX_HEADER_BYTES (counted by the chunk that arrives, so at
      most that and one socket read are parsed); past it the connection is cut. httptools has no such limit and
      joins a header's value with `+=` (quadratic): one header that never ended cost 8 s of the loop for 80 MiB,
      every chat and ping waiting meanwhile (audit 10; and behind a response a client does not read, audit 11).
    - past MAX_CONNECTIONS open connections (HTTP and WebSocket), a new one is closed at once.
    Subclassing the protocol is the one hook uvicorn offers below the ASGI app (`Config(http=...)`), and the
    app never sees a connection whose headers are not in."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class Guarded(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None
        _waiting_on: object = None  # the request cycle current when the deadline was armed
        _header_bytes = 0  # bytes received since the deadline was armed (no request's head completed since)

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.abort()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.transport.get_protocol() is self:
                if self._waiting_on is not self.cycle or self._deadline is None:
                    # bytes after the last request's head (the next request on a kept-alive connection, or one
                    # pipelined behind a response still being sent: uvicorn parses on while a client that does not
                    # read holds that response, audit 11): the next head's deadline and byte count start now
                    self._arm()
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._disarm()
                    self.transport.abort()  # a request line and headers past the bound: not parsed further
                    return
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_bytes = 0
            self._waiting_on = self.cycle
            self._deadline = self.loop.call_later(header_deadline_s, self._deadline_passed)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _deadline_passed(self) -> None:
            self._deadline = None
            if self.transport.get_protocol() is not self:
                return  # upgraded: the WebSocket protocol has the connection now
            if self.cycle is self._waiting_on and not self.transport.is_closing():
                self.transport.close()  # no request's head completed in time since its first byte

    return Guarded


def guarded_ws_protocol(max_unsent_bytes: int) -> type:
    """uvicorn's WebSocket protocol (websockets' sans-I/O one, as uvicorn picks by default) with the bound it
    lacks: it answers each ping with a pong written straight to the socket, whatever is already waiting
    there, so a client that sends pings and never reads grew the gateway's memory without end (8 million
    pings: +670 MB). A connection whose unsent bytes pass MAX_UNSENT_BYTES after a pong is cut, as a
    client that stops reading its frames is (`--send-queue-bytes`). Text frames need no such bound: the
    protocol stops reading until the app has taken each one."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from qwenops.gateway.app import WS_PROTOCOL_SCOPE_KEY

    class Guarded(WebSocketsSansIOProtocol):
        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            # The app sends a delta from its chat's task when this socket takes bytes now (Connection.send_now).
            self.scope[WS_PROTOCOL_SCOPE_KEY] = self  # type: ignore[literal-required]

        def handle_ping(self) -> None:
            super().handle_ping()
            if self.transport.get_write_buffer_size() > max_unsent_bytes and not self.transport.is_closing():
                self.logger.warning("a WebSocket client sent pings and read no pongs (%d bytes unsent): cut",
                                    self.transport.get_write_buffer_size())
                self.transport.abort()

    return Guarded


def uvicorn_config(app: Any, config: GatewayConfig, *, log_level: str = "info") -> uvicorn.Config:
    import uvicorn

    from qwenops.untrusted import GATEWAY_HEADER_DEADLINE_S, GATEWAY_MAX_HEADER_BYTES

    uv_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_level=log_level, lifespan="on",
        http=guarded_http_protocol(GATEWAY_HEADER_DEADLINE_S, connection_cap(), GATEWAY_MAX_HEADER_BYTES),
        ws=guarded_ws_protocol(config.send_queue_bytes),
        # A frame up to this size is read whole and answered `bad_request` (over --max-frame-bytes); a larger one
        # closes the connection (1009). Each connection may hold this much of an unfinished frame: 4 frames' worth.
        ws_max_size=max(1024 * 1024, config.max_frame_bytes * 4),
        ws_ping_interval=config.ping_interval_s, ws_ping_timeout=config.ping_interval_s,
        ws_per_message_deflate=False,  # tokens are tiny; deflate costs CPU and memory per connection
        timeout_graceful_shutdown=5, access_log=False,
        # uvicorn's default trusts X-Forwarded-For from 127.0.0.1 (or $FORWARDED_ALLOW_IPS): any local process could
        # write another client's address into the gateway's refusals (audit 8). The peer's own address is logged.
        proxy_headers=False,
    )
    error_log = logging.getLogger("uvicorn.error")  # configured by uvicorn.Config just now; filters are kept
    if not any(isinstance(found, OneLine) for found in error_log.filters):
        error_log.addFilter(OneLine())
    return uv_config


def listening_socket(uv_config: uvicorn.Config, config: GatewayConfig) -> socket.socket:
    """The bound socket, with `--socket-buffer-bytes` as its SO_SNDBUF: the connections accepted on it
    inherit it (Linux copies a listening socket's buffer sizes, and their lock against autotuning, into
    every socket it accepts), which is how it reaches each client's socket without uvicorn's help."""
    sock = uv_config.bind_socket()  # uvicorn's own binding: IPv6, SO_REUSEADDR; exits if the bind fails
    if config.socket_buffer_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.socket_buffer_bytes)
    return sock


def freeze_startup_heap() -> None:
    """Move every object alive once the gateway has started (modules, the app, the HTTP client: ~50,000)
    out of the garbage collector's reach, as vLLM's API server does after its start-up: a full
    collection then walks only what chats create. Measured under benchmarks/gateway.py's load: a full
    collection paused the event loop, and so every stream, 27-54 ms before, 5-14 ms after."""
    import gc

    from qwenops.stream import client  # noqa: F401  (imported by the first chat otherwise: frozen with the rest)

    gc.collect()
    gc.freeze()


def run_gateway(config: GatewayConfig, *, log_level: str = "info") -> GatewayRun:
    """Serve until SIGTERM or Ctrl-C; return what was served. Binding errors raise before serving."""
    import uvicorn

    from qwenops.errors import PortInUseError
    from qwenops.gateway.app import Gateway, create_app
    from qwenops.hardware.host import check_port_free

    check_port_free(config.host, config.port)  # named owner, before anything is served
    app = create_app(config)
    gateway: Gateway = app.state.gateway
    drained = False

    class _Server(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None
        draining: asyncio.Task[None] | None = None

        async def serve(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            freeze_startup_heap()

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.draining is not None or self.loop is None:
                self.should_exit = self.force_exit = True  # a second signal: now
                return
            self.loop.call_soon_threadsafe(self._start_drain)

        def _start_drain(self) -> None:
            assert self.loop is not None
            self.draining = self.loop.create_task(self._drain())

        async def _drain(self) -> None:
            nonlocal drained
            await gateway.drain()
            drained = True
            self.should_exit = True

    uv_config = uvicorn_config(app, config, log_level=log_level)
    server = _Server(uv_config)
    logging.getLogger("qwenops.gateway").setLevel(log_level.upper())
    try:
        server.run(sockets=[listening_socket(uv_config, config)])
    except SystemExit:  # uvicorn exits when the bind fails: another process took the port just now
        raise PortInUseError(f"{config.host}:{config.port} could not be bound", field="--port",
                             hint="stop the process that holds it or pass another --port") from None
    stats = gateway.stats
    return GatewayRun(url=ws_url(config), upstream=gateway.upstream_shown, model=config.model,
                      token_required=config.token is not None, chats_started=stats.chats_started,
                      chats_done=stats.chats_done, chats_failed=stats.chats_failed, drained=drained)

