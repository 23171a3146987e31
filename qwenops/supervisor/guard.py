"""The server's guard: leader of its process group, it ends that group when qwenops itself dies.

`qwenops serve` drains and kills the server's process group on every stop it is told about, but a
SIGKILL of qwenops (the OOM killer, `kill -9`, a container runtime) tells it nothing: vLLM's API
server, EngineCore and workers would keep running, holding the GPU memory and the port. So the
server is started as `python -m qwenops.supervisor.guard -- ARGV`: this small process leads the new
group, runs ARGV as its child in the same group, and watches its own parent. When the parent is
gone (re-parented to init or a subreaper), it sends SIGTERM to the group, waits briefly, then
SIGKILL, itself included.

Why a watching process and not the kernel's PR_SET_PDEATHSIG: that signal needs prctl in a
preexec_fn (unsafe once threads run, and qwenops' output pumps are threads), fires when the
*thread* that spawned the child ends rather than the process, and reaches only the direct child,
while vLLM's EngineCore and workers are grandchildren. Polling getppid() is portable and costs one
system call every quarter second. Standard library only: it starts in milliseconds.

The guard ignores SIGTERM, SIGINT and SIGHUP: qwenops drains by signalling the whole group, and the
guard's part is to wait for the server and exit with its status (128 + N for a signal N, as shells do).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

POLL_S = 0.25
GRACE_S = 2.0  # after SIGTERM to the group, before SIGKILL: well inside the 5 s an orphan may live


def guard_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """ARGV, run under the guard (with this interpreter, so the guard finds qwenops)."""
    return [sys.executable, "-m", "qwenops.supervisor.guard", "--", *argv]


def _status(code: int) -> int:
    return 128 - code if code < 0 else code


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the pipe to qwenops may have died with it
        print(f"qwenops guard: {text}", file=sys.stderr, flush=True)


def _end_group(child: subprocess.Popen[bytes]) -> None:
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(0, signal.SIGKILL)  # the guard is in the group too: this is its last act


def main(argv: list[str]) -> int:
    if argv[:1] != ["--"] or len(argv) < 2:
        _say("usage: python -m qwenops.supervisor.guard -- COMMAND [ARG...]")
        return 2
    parent = os.getppid()
    # Spawn first: an ignored signal stays ignored across exec, and the server must keep the defaults.
    child = subprocess.Popen(argv[1:])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            return _status(child.wait(timeout=POLL_S))
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent:
            _say(f"qwenops (pid {parent}) is gone; ending the server's process group")
            _end_group(child)
            return 137  # not reached: SIGKILL above


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
