"""The server process: spawned in its own session, its output pumped to a rotated log, its whole
process group ended on stop.

vLLM runs as a tree (APIServer -> EngineCore -> Worker). Killing only the API server leaves the
EngineCore and its workers alive, re-parented to init and holding GPU memory and the port, so every
signal here goes to the process *group* (os.killpg), and "stopped" means "no process of the group
is left", checked with killpg(pgid, 0) after reaping the leader.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LineSink = Callable[[str], object]


class _NoFollowRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """logging's size-capped rotation, except that the log file is opened O_NOFOLLOW with mode 0640: a symlink
    planted at the log path (a shared or loose state directory) is replaced, never written through, as
    qwenops.atomicfile does for every other file it writes. Its `open()` followed the link and appended the
    server's output (part of it a client's text) to the link's target, as whoever ran serve (audit 5).
    Rotation renames, which never follows a link."""

    def _open(self) -> Any:
        # O_NONBLOCK: a named pipe planted there is refused at once (ENXIO without a reader), never waited on (audit
        # 9: serve hung before spawning); on a regular file it changes nothing.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.baseFilename, flags, 0o640)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise OSError(errno.EINVAL, f"{self.baseFilename} is a named pipe, not a regular file") from None
            if exc.errno != errno.ELOOP:
                raise
            Path(self.baseFilename).unlink()  # the link itself, not its target
            fd = os.open(self.baseFilename, flags, 0o640)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, f"{self.baseFilename} is not a regular file")
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


@dataclass(frozen=True)
class LogFile:
    """Where the server's output is kept: size-capped and rotated so a chatty server cannot fill the disk."""

    path: Path
    max_bytes: int = 20 * 1024 * 1024
    backups: int = 3

    def open_logger(self) -> logging.Logger:
        # logging's RotatingFileHandler already does size-capped rotation safely from many threads.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        logger = logging.getLogger(f"qwenops.server.{self.path}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            handler = _NoFollowRotatingFileHandler(
                self.path, maxBytes=self.max_bytes, backupCount=self.backups, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        return logger


@dataclass
class ServerProcess:
    """One spawned server: the leader's Popen, its process group and the thread pumping its output."""

    popen: subprocess.Popen[bytes]
    started_at: float
    pump: threading.Thread | None = None
    exit_code: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        # start_new_session makes the leader's pid the group id; no getpgid race after it exits.
        return self.popen.pid

    def poll(self) -> int | None:
        """The leader's exit code once it has exited (and been reaped), else None."""
        if self.exit_code is None:
            self.exit_code = self.popen.poll()
        return self.exit_code

    def group_alive(self) -> bool:
        """Whether any process of the group is left (the leader is reaped first so a zombie never counts)."""
        self.poll()
        return group_alive(self.pgid)

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    def wait_group_gone(
        self, timeout_s: float, *, hurry: threading.Event | None = None, step_s: float = 0.02
    ) -> bool:
        """Wait until no live process of the group is left; give up at timeout_s or when `hurry` is set."""
        deadline = time.monotonic() + timeout_s
        while self.group_alive():
            if time.monotonic() >= deadline or (hurry is not None and hurry.is_set()):
                return False
            time.sleep(step_s)
        return True

    def stop(self, drain_timeout_s: float, *, hurry: threading.Event | None = None) -> bool:
        """SIGTERM the group, wait up to drain_timeout_s (or until `hurry`), then SIGKILL it.

        True if the group drained by itself in time.
        """
        if not self.group_alive():
            self._join_pump()
            return True
        self.signal_group(signal.SIGTERM)
        drained = self.wait_group_gone(drain_timeout_s, hurry=hurry)
        if not drained:
            self.signal_group(signal.SIGKILL)
            # SIGKILL cannot be ignored; the wait only covers the kernel tearing the processes down.
            self.wait_group_gone(10.0)
        self._join_pump()
        return drained

    def kill(self) -> None:
        """SIGKILL the whole group at once: used when the leader already died and the rest are orphans."""
        self.signal_group(signal.SIGKILL)
        self.wait_group_gone(10.0)
        self._join_pump()

    def _join_pump(self) -> None:
        if self.pump is not None:
            self.pump.join(timeout=2.0)


def group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is in the group.

    killpg(pgid, 0) alone also counts zombies: an orphaned EngineCore killed after its parent is
    re-parented to PID 1, which in containers may reap only every few seconds. A zombie holds no
    memory, port or GPU, so only when the cheap check says "someone" do we look closer with psutil.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member exists but belongs to someone else: still alive
    return bool(live_group_members(pgid))


def live_group_members(pgid: int) -> list[int]:
    import psutil

    members: list[int] = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def tree_listens(leader_pid: int, port: int, host: str | None = None) -> bool:
    """Whether LEADER_PID or one of its descendants listens on TCP PORT, and, with HOST (the host the keyed
    probe connects to), whether no other listener shares the port on an address HOST names: the server serve
    started holds the port, not a process that took it while vLLM was down, nor one beside vLLM's socket on
    another address (`[::1]:PORT` beside vLLM's `127.0.0.1:PORT` gets the connection to `localhost` first;
    audit 9, F5). Another local user's listener would get the API key. The tree's own descriptors are read
    first; with HOST, the host's listeners on PORT too (psutil's socket table: another user's shows no pid)."""
    import psutil

    try:
        leader = psutil.Process(leader_pid)
        tree = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return False
    listening = False
    for process in tree:
        try:
            listening = any(_listens_on(c, port) for c in process.net_connections(kind="tcp"))
        except (psutil.Error, OSError):
            continue
        if listening:
            break
    if not listening or host is None:
        return listening
    targets = _addresses_of(host, port)
    if targets is None:
        return False
    pids = {process.pid for process in tree}
    try:
        # Another user's socket shows no pid: it is not the tree's (the tree runs as this user).
        others = [_listen_ip(c) for c in psutil.net_connections(kind="tcp")
                  if _listens_on(c, port) and c.pid not in pids]
    except (psutil.Error, OSError):
        return False
    return not any(_reaches(listener, target) for listener in others for target in targets)


def _listens_on(connection: Any, port: int) -> bool:
    import psutil

    return bool(connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port)


def _listen_ip(connection: Any) -> str:
    return str(connection.laddr.ip).split("%", 1)[0]


def _addresses_of(host: str, port: int) -> list[str] | None:
    """The addresses a connection to HOST may reach, or None when HOST does not resolve (nothing keyed is sent)."""
    import ipaddress
    import socket

    try:
        return [str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return [str(info[4][0]).split("%", 1)[0] for info in found]


def _reaches(listener: str, target: str) -> bool:
    """Whether a socket listening on address LISTENER takes connections made to TARGET: the same address, or
    the unspecified address of its family (`::` also takes IPv4 unless it is IPV6_V6ONLY, so it counts)."""
    import ipaddress

    try:
        bound, to = ipaddress.ip_address(listener), ipaddress.ip_address(target)
    except ValueError:
        return True  # an address we cannot read: assume it may take the connection
    if isinstance(to, ipaddress.IPv6Address) and to.ipv4_mapped is not None:
        to = to.ipv4_mapped
    if isinstance(bound, ipaddress.IPv6Address) and bound.ipv4_mapped is not None:
        bound = bound.ipv4_mapped
    if bound == to:
        return True
    if bound.is_unspecified:
        return bound.version in (to.version, 6)
    return False


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: LogFile | None,
    on_line: LineSink | None = None,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start argv in a new session (its own process group) with stdout+stderr pumped line by line."""
    # The log opens before the child exists: a failure after Popen would leave a server nobody
    # supervises, drains or stops (it is not ours to kill yet from the runner's point of view).
    try:
        logger = log.open_logger() if log is not None else None
    except OSError as exc:
        from qwenops.errors import BadInputError

        assert log is not None
        raise BadInputError(f"cannot write the server log {log.path}: {exc.strerror or exc}",
                            field="state_dir", hint="point QWENOPS_STATE_DIR at a writable directory") from None
    popen = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process = ServerProcess(popen=popen, started_at=time.monotonic())
    try:
        process.pump = threading.Thread(
            target=_pump, args=(popen, logger, on_line), name=f"server-output-{popen.pid}", daemon=True
        )
        process.pump.start()
    except BaseException:
        process.kill()
        raise
    return process


def _lines(stdout: Any) -> Iterator[str]:
    """The server's output as lines of at most MAX_SERVER_LINE_BYTES: the rest of a longer line is dropped
    (marked), never held: a line without end held serve's memory at 4.5 times its size and went whole to the
    log and the console (400 MiB of one line: audit 5). tqdm redraws a line with '\r': only its final state is
    kept, so a progress bar of any length costs one redraw."""
    from qwenops.untrusted import MAX_SERVER_LINE_BYTES

    cap = MAX_SERVER_LINE_BYTES
    kept, dropped = b"", False
    for chunk in iter(lambda: stdout.readline(cap), b""):
        ends = chunk.endswith(b"\n")
        body = chunk.rstrip(b"\r\n") if ends else chunk
        if b"\r" in body:  # a redraw: what came before it on this line is overwritten
            kept, dropped = body.rsplit(b"\r", 1)[-1], False
        else:
            room = cap - len(kept)
            kept, dropped = kept + body[:room], dropped or len(body) > room
        if ends:
            yield kept.decode("utf-8", errors="replace") + (" [qwenops: the rest of this line was dropped]"
                                                            if dropped else "")
            kept, dropped = b"", False
    if kept:
        yield kept.decode("utf-8", errors="replace")


def _pump(popen: subprocess.Popen[bytes], logger: logging.Logger | None, on_line: LineSink | None) -> None:
    assert popen.stdout is not None
    sink_failed = False
    # The pipe stays open while any group member holds it, so this also drains orphaned workers.
    for line in _lines(popen.stdout):
        if logger is not None:
            logger.info(line)
        if on_line is not None:
            try:
                on_line(line)
            except Exception as exc:
                # A dead sink (BrokenPipe on stderr under `| head`) must not end this thread: an
                # undrained pipe blocks vLLM on its next write and the log stops.
                if not sink_failed and logger is not None:
                    logger.info(f"qwenops: output sink failed, server output continues in this log only: {exc!r}")
                sink_failed = True
    popen.stdout.close()
