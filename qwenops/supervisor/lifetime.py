"""The supervising process's lifetime: no orphans across runs, and the signals that end a run.

A run record names the process group a qwenops process leads for a server, so the next start can end
a group that a SIGKILLed qwenops left behind (supervisor/guard.py covers SIGKILL within a run; this
covers a guard that died with it). `stop_on_signals` turns the signals that would otherwise kill
qwenops by their default action into a stop request, so the supervisor drains and ends its group.
Knows nothing of profiles: callers pass the record's path and what to call the server in messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from qwenops.atomicfile import write_atomic

# Set in the server's environment, and kept in the run record: what proves a process is one this run
# started (every process vLLM starts inherits it), before a later start signals the group the record names.
RUN_ID_ENV = "QWENOPS_RUN_ID"


def run_record(state_dir: Path | str, name: str) -> Path:
    """Where a run of NAME (serve's profile) records the process group it leads: read by the next start
    and by the gateway (is that serve still running?)."""
    return Path(state_dir) / "run" / f"serve-{name}.json"


def fatal_record(state_dir: Path | str, name: str) -> Path:
    """Where a run of NAME records that its supervisor gave up (FATAL): read by the next run's metrics
    and by the gateway, which ends the chats waiting for that server."""
    return Path(state_dir) / f"serve-{name}.fatal.json"


def _read_record(path: Path) -> dict[str, object] | None:
    """The JSON object a record holds, read bounded (4 KiB); None for no file or anything else."""
    from qwenops.readfile import read_capped

    try:
        data = json.loads(read_capped(path, 4096)[:4096])
    except (OSError, ValueError, RecursionError):  # RecursionError: 4 KiB of '[' nests past the parser's limit
        return None
    return data if isinstance(data, dict) else None


def read_last_fatal(path: Path) -> tuple[str, float] | None:
    """(cause, when) of the last FATAL recorded at PATH; None when there is none or it is not ours."""
    data = _read_record(path)
    if data is None:
        return None
    cause, at = data.get("cause"), data.get("at")
    if not (isinstance(cause, str) and cause.isascii() and cause.replace("_", "").isalnum()
            and 0 < len(cause) <= 64):
        return None
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not 0 < at < 1e11:
        return None
    return cause, float(at)


def write_last_fatal(path: Path, cause: str, at: float) -> None:
    """Record a FATAL (atomically); a read-only state directory must not turn a FATAL into a crash."""
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps({"cause": cause, "at": at}), mode=0o644, over_link=True)


def recorder_running(path: Path) -> bool:
    """Whether the qwenops that wrote the run record at PATH still runs (its pid and start time match)."""
    import psutil

    data = _read_record(path)
    if data is None:
        return False
    pid, started = data.get("qwenops_pid"), data.get("qwenops_started")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if not isinstance(started, (int, float)) or isinstance(started, bool):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - float(started)) < 1.0
    except (psutil.Error, OSError, ValueError, OverflowError):
        return False


def new_run_id() -> str:
    """A run's mark, for RUN_ID_ENV in its server's environment and for its run record."""
    import secrets

    return secrets.token_hex(16)


def write_run_record(path: Path, leader_pid: int, *, port: int, run_id: str) -> None:
    """Who runs this server now, so a start after a SIGKILL of qwenops can end what was left: RUN_ID is
    the mark the server's processes carry in their environment (RUN_ID_ENV)."""
    import psutil

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pgid": leader_pid, "qwenops_pid": os.getpid(),
                  "qwenops_started": psutil.Process().create_time(), "port": port, "run_id": run_id}
        write_atomic(path, json.dumps(record), mode=0o644, over_link=True)
    except (OSError, psutil.Error):
        return  # a read-only state dir costs only this cleanup, not the run


def end_leftover_group(path: Path, *, what: str, port: int) -> str | None:
    """End the process group an earlier, now dead, qwenops recorded at PATH; say what was ended.

    Only when the qwenops that recorded it is gone (a live one is another running server, whose port
    the port check then names), and only the group's members that carry the record's run id in their
    environment: a process group number is reused once its processes are gone (after a reboot, or by
    any new session), and the record is a file, so neither its number nor its owner's death proves that
    the processes in that group now are the ones that run started.
    """
    import psutil

    from qwenops.supervisor.process import live_group_members

    record = _read_record(path) or {}
    pgid, owner, owner_started = record.get("pgid"), record.get("qwenops_pid"), record.get("qwenops_started")
    run_id = record.get("run_id")
    if not (type(pgid) is int and type(owner) is int and pgid > 1 and owner > 0
            and isinstance(owner_started, (int, float)) and not isinstance(owner_started, bool)
            and isinstance(run_id, str) and len(run_id) == 32):
        path.unlink(missing_ok=True)  # not a record this qwenops writes: nothing in it can be trusted
        return None
    try:
        if psutil.Process(owner).create_time() == owner_started:
            return None  # that qwenops still runs
    except psutil.Error:
        pass

    def ours() -> list[int]:
        # The group's members, and this user's processes that left it (setsid, a daemonizing worker) but
        # still carry the run id: the mark, not the group, says whose they are (audit 5).
        return _marked(sorted({*live_group_members(pgid), *_same_user_pids()}), run_id)

    members = ours()
    if not members:
        path.unlink(missing_ok=True)
        return None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours():  # each by its pid, not the group: an unmarked member is not ours to end
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        for _ in range(50):
            if not ours():
                break
            threading.Event().wait(0.1)
        if not ours():
            break
    path.unlink(missing_ok=True)
    return (f"ended {len(members)} process(es) of {what} left by an earlier qwenops "
            f"(pid {owner}, process group {pgid}) before binding port {port}")


def _same_user_pids() -> list[int]:
    """This user's live processes, but this one (root: every process)."""
    import psutil

    uid, me = os.getuid(), os.getpid()
    pids = []
    for process in psutil.process_iter(["uids"]):
        uids = process.info.get("uids")
        if uids is not None and uid in (0, uids.real) and process.pid != me:
            pids.append(process.pid)
    return pids


def _marked(pids: list[int], run_id: str) -> list[int]:
    """The live, non-zombie processes of PIDS whose environment carries RUN_ID (a process whose environment
    cannot be read, another user's, is not counted as ours)."""
    import psutil

    marked: list[int] = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(RUN_ID_ENV) == run_id:
                marked.append(pid)
        except (psutil.Error, OSError):
            continue
    return marked


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None], *, enabled: bool) -> Iterator[None]:
    """SIGTERM/SIGINT/SIGHUP/SIGQUIT become a stop request; the loop notices it at once and drains.

    The server runs in its own session, so a closed terminal or dropped ssh (SIGHUP) or Ctrl-\\
    (SIGQUIT) reaches only us: dying by their default action would leave the whole vLLM tree running.
    PR_SET_PDEATHSIG in the child would be a backstop for SIGKILL of qwenops, but it needs prctl in a
    preexec_fn, which is not safe once threads run (the output pumps); the guard covers SIGKILL instead.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, lambda num, _frame: request_stop(signal.Signals(num).name))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
