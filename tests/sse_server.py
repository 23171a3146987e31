"""A scripted HTTP server on a real socket (127.0.0.1, a free port) for the stream tests.

Each connection's request is read and recorded (method, path, headers, body); then the test's `answer`
callable writes whatever it wants to the socket: a correct event stream, one cut mid-chunk, keep-alive
comments, a stream without end, an HTML page, bytes that are not HTTP at all. No mock of httpx: the
client under test talks to a socket, as it would to vLLM.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Conn:
    """The answering side of one connection."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop

    def send(self, data: bytes) -> bool:
        """Write; False once the client has gone (or the server is stopping)."""
        if self.stop.is_set():
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def head(self, status: int = 200, content_type: str = "text/event-stream; charset=utf-8", *,
             chunked: bool = False, length: int | None = None) -> None:
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}.get(status, "X")
        lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {content_type}", "connection: close"]
        if chunked:
            lines.append("transfer-encoding: chunked")
        elif length is not None:
            lines.append(f"content-length: {length}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def chunk(self, data: bytes) -> bool:
        """One piece of a chunked body."""
        return self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_chunks(self) -> None:
        self.send(b"0\r\n\r\n")

    def sleep(self, seconds: float) -> bool:
        """Wait, unless the server is stopping; False when it is."""
        return not self.stop.wait(seconds)


Answer = Callable[[Conn, Seen], None]


@dataclass
class ScriptedServer:
    """`answer` answers POSTs; a GET (smoke-stream's /v1/models) gets 404 unless `answer_gets`."""

    answer: Answer
    seen: list[Seen] = field(default_factory=list)
    answer_gets: bool = False

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(10)
            try:
                seen = _read_request(sock)
            except (OSError, ValueError):
                return
            self.seen.append(seen)
            with contextlib.suppress(OSError):
                if seen.method == "GET" and not self.answer_gets:
                    Conn(sock, self._stop).head(404, "application/json", length=0)
                else:
                    self.answer(Conn(sock, self._stop), seen)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


def _read_request(sock: socket.socket) -> Seen:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ValueError("closed before a request")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    first, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = first.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return Seen(method=method, path=path, headers=headers, body=body)


@contextlib.contextmanager
def serving(answer: Answer, *, answer_gets: bool = False) -> Iterator[ScriptedServer]:
    server = ScriptedServer(answer, answer_gets=answer_gets)
    try:
        yield server
    finally:
        server.close()


# --------------------------------------------------------------------------------------------- answers


def pieces(raw: bytes, size: int) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def stream_of(body: bytes, *, size: int = 1 << 20, cut: bool = False, content_type: str = "text/event-stream",
              pause_s: float = 0.0) -> Answer:
    """200 and `body` as a chunked event stream, written `size` bytes at a time; `cut`: the connection
    closes without the last chunk (a transport error mid-body, as when a server is killed)."""

    def answer(conn: Conn, _seen: Seen) -> None:
        conn.head(200, content_type, chunked=True)
        for piece in pieces(body, size):
            if not conn.chunk(piece):
                return
            if pause_s:
                conn.sleep(pause_s)
        if not cut:
            conn.end_chunks()

    return answer


def status_of(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    def answer(conn: Conn, _seen: Seen) -> None:
        conn.head(status, content_type, length=len(body))
        conn.send(body)

    return answer


def raw_bytes(data: bytes) -> Answer:
    """Not HTTP at all: these bytes, then close."""

    def answer(conn: Conn, _seen: Seen) -> None:
        conn.send(data)

    return answer


def forever(events: Iterable[bytes], *, every_s: float = 0.0, head: bool = True) -> Answer:
    """200, then each of `events` (cycled) every `every_s` until the client goes or the server stops."""
    import itertools

    def answer(conn: Conn, _seen: Seen) -> None:
        if head:
            conn.head(200, "text/event-stream", chunked=True)
        started = time.monotonic()
        for event in itertools.cycle(list(events)):
            if not conn.chunk(event) or time.monotonic() - started > 60:
                return
            if every_s and not conn.sleep(every_s):
                return

    return answer
