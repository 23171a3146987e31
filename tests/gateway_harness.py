"""Run the gateway in this process (uvicorn in a thread, a real socket) and talk to it as clients do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from qwenops.gateway.app import Gateway, create_app
from qwenops.gateway.config import GatewayConfig, build_config
from qwenops.gateway.run import listening_socket, uvicorn_config
from tests.polling import poll_until


class RunningGateway:
    def __init__(self, config: GatewayConfig) -> None:
        import uvicorn

        self.config = config
        self.app = create_app(config)
        class _Server(uvicorn.Server):
            loop: asyncio.AbstractEventLoop | None = None

            async def serve(self, sockets: Any = None) -> None:
                self.loop = asyncio.get_running_loop()
                await super().serve(sockets)

        uv_config = uvicorn_config(self.app, config, log_level="warning")
        self.server = _Server(uv_config)
        sockets = [listening_socket(uv_config, config)]
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": sockets}, daemon=True,
                                       name="gateway")

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.config.port}/ws/chat"

    def call(self, coro: Any) -> Any:
        """Run CORO on the gateway's own event loop (its objects belong to that loop); a future."""
        assert self.server.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.server.loop)

    def health(self) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.config.port}/healthz", timeout=5).json()
        return found


@contextlib.contextmanager
def running_gateway(upstream: str, **values: Any) -> Iterator[RunningGateway]:
    from tests.integration.conftest import free_port

    values.setdefault("port", free_port())
    running = RunningGateway(build_config(upstream=upstream, model=values.pop("model", "m"), **values))
    running.thread.start()

    def started() -> bool:
        assert running.thread.is_alive(), "the gateway's thread ended before it started"
        return bool(running.server.started)

    poll_until(started, "the gateway started", timeout_s=120, interval_s=0.02)
    try:
        yield running
    finally:
        running.server.should_exit = True
        running.thread.join(15)


def connect(url: str, **kwargs: Any) -> Any:
    from websockets.asyncio.client import connect as ws_connect

    kwargs.setdefault("open_timeout", 10)
    return ws_connect(url, proxy=None, compression=None, **kwargs)


def chat(chat_id: str, content: str, **params: Any) -> str:
    return json.dumps({"type": "chat", "id": chat_id, "messages": [{"role": "user", "content": content}], **params})


async def receive(ws: Any, timeout_s: float = 60) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return frame


async def until_end(ws: Any, chat_ids: set[str], timeout_s: float = 120) -> dict[str, list[dict[str, Any]]]:
    """Every frame for CHAT_IDS until each has its one `done` or `error` (frames of other ids: under "")."""
    frames: dict[str, list[dict[str, Any]]] = {chat_id: [] for chat_id in chat_ids}
    frames[""] = []
    open_ids = set(chat_ids)
    deadline = time.monotonic() + timeout_s
    while open_ids:
        frame = await receive(ws, max(0.1, deadline - time.monotonic()))
        chat_id = frame.get("id")
        if chat_id in open_ids:
            frames[chat_id].append(frame)
            if frame["type"] in ("done", "error"):
                open_ids.discard(chat_id)
        else:
            frames[""].append(frame)
    return frames


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(frame["content"] for frame in frames if frame["type"] == "delta")


def handshake(port: int, headers: Sequence[tuple[str, str | bytes]], path: str = "/ws/chat") -> int:
    """The status of a WebSocket upgrade sent with exactly HEADERS besides the upgrade's own (no Host unless
    given, any number of them, raw bytes as they are): what a client that is not a browser can send."""
    lines = [f"GET {path} HTTP/1.1".encode(), b"Upgrade: websocket", b"Connection: Upgrade",
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13"]
    lines += [name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
              for name, value in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status = answer.split(b"\r\n", 1)[0].split()
    return int(status[1]) if len(status) > 1 and status[1].isdigit() else 0


class LogLines(logging.Handler):
    """Every line the gateway and uvicorn log (tracebacks counted line by line), for the rule that a
    rejected frame or handshake costs at most one line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(self.format(record).splitlines())


@contextlib.contextmanager
def log_lines() -> Iterator[LogLines]:
    """Collect what the loggers of the gateway (qwenops.gateway) and uvicorn (which does not propagate to
    the root) write while the block runs."""
    handler = LogLines()
    loggers = [logging.getLogger(name) for name in ("qwenops", "uvicorn")]
    level = loggers[0].level
    loggers[0].setLevel(logging.INFO)  # the gateway's default --log-level
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        loggers[0].setLevel(level)
        for logger in loggers:
            logger.removeHandler(handler)
