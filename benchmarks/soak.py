"""Soak `qwenops serve` on the real vLLM CPU engine: faults at random moments while clients stream.

    python benchmarks/soak.py [--faults 20] [--seed 1] [--clients 2]

Fault kinds, in turn: SIGKILL of the API server, of EngineCore, of a worker; SIGSTOP of EngineCore
(the progress watchdog's case); SIGKILL of qwenops itself, followed by a new `qwenops serve`. For each:
recovered or not, the time from the fault to ready again, the processes left behind, and how the
streams the fault cut were reported. A stream counts as cut when it ended without its full answer
(every request asks for `max_tokens` with `ignore_eos`, so a whole answer's usage chunk says exactly
that many); a cut stream reported as a clean finish is the failure this looks for.
Goals: every fault recovered, 0 orphans, 0 cut streams reported as complete.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MAX_TOKENS = 120
KINDS = ("kill api server", "kill EngineCore", "kill worker", "stop EngineCore", "kill qwenops")
PROFILE = """\
extends: cpu-tiny
supervise:
  health_interval_s: 1
  stall_timeout_s: 8
  stall_probe_timeout_s: 4
  max_quick_failures: 100
"""


@dataclass
class StreamRecord:
    started: float
    ended: float
    tokens: int
    outcome: str  # "complete" or the error's code


@dataclass
class Soak:
    state_dir: Path
    port: int
    serve: subprocess.Popen[bytes] | None = None
    streams: list[StreamRecord] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_serve(self) -> None:
        env = {**os.environ, "QWENOPS_STATE_DIR": str(self.state_dir),
               "QWENOPS_PROFILES_DIR": str(self.state_dir / "soak-profiles")}
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "qwenops", "serve", "-p", "soak", "--port", str(self.port), "--quiet", "--json"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=REPO)

    def ready(self) -> bool:
        try:
            health = httpx.get(self.base_url + "/health", timeout=1)
            models = httpx.get(self.base_url + "/v1/models", timeout=1)
        except httpx.HTTPError:
            return False
        return health.status_code == 200 and models.status_code == 200

    def wait_ready(self, timeout_s: float = 600) -> float | None:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.ready():
                return time.monotonic() - start
            time.sleep(0.2)
        return None

    def tree(self) -> list[psutil.Process]:
        assert self.serve is not None
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.serve.pid).children(recursive=True)
        return []

    def client(self) -> None:
        from qwenops.errors import QwenopsError
        from qwenops.stream.client import Timeouts, stream_chat

        while not self.stop.is_set():
            if not self.ready():
                time.sleep(0.2)
                continue
            started, tokens, outcome = time.monotonic(), 0, "complete"
            try:
                for delta in stream_chat([{"role": "user", "content": "Tell me about the sea."}],
                                         base_url=self.base_url, model="Qwen3-14B", max_tokens=MAX_TOKENS,
                                         extra_body={"ignore_eos": True},
                                         timeouts=Timeouts(connect_s=5, read_s=60)):
                    if delta.usage is not None:  # the final usage chunk: vLLM's own count
                        tokens = delta.usage.completion_tokens
            except QwenopsError as exc:
                outcome = exc.code
            with self.lock:
                self.streams.append(StreamRecord(started, time.monotonic(), tokens, outcome))


def fault(soak: Soak, kind: str) -> tuple[list[int], bool]:
    """Do one fault; return the pids that must be gone afterwards and whether it was SIGKILL of qwenops."""
    tree = soak.tree()
    by_name = {p.pid: (p.name() if p.is_running() else "") for p in tree}
    api = next((p for p in tree if "vllm.entrypoints" in " ".join(p.cmdline())), None)
    engine = next((p for p in tree if by_name.get(p.pid, "").startswith("VLLM::EngineCore")), None)
    worker = next((p for p in tree if by_name.get(p.pid, "").startswith("VLLM::Worker")), None)
    target = {"kill api server": api, "kill EngineCore": engine, "kill worker": worker,
              "stop EngineCore": engine}.get(kind)
    if kind == "kill qwenops":
        assert soak.serve is not None
        old = [p.pid for p in tree]
        soak.serve.send_signal(signal.SIGKILL)
        soak.serve.wait()
        return old, True
    if target is None:
        return [], False
    target.send_signal(signal.SIGSTOP if kind == "stop EngineCore" else signal.SIGKILL)
    return [target.pid], False


Row = tuple[int, str, "float | None", int]  # fault number, kind, seconds from the fault to ready, orphans


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pids: list[int]) -> int:
    count = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            count += psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return count


def run_faults(soak: Soak, faults: int, rng: random.Random) -> list[Row]:
    rows: list[Row] = []
    for number in range(1, faults + 1):
        time.sleep(rng.uniform(2.0, 8.0))  # a random moment, with streams in flight
        kind = KINDS[(number - 1) % len(KINDS)]
        at = time.monotonic()
        must_go, restart_serve = fault(soak, kind)
        orphans = 0
        if restart_serve:
            time.sleep(5)  # the guard's promise: nothing left 5 s after SIGKILL of qwenops
            orphans = alive(must_go)
            soak.start_serve()
        while soak.ready() and time.monotonic() - at < 30:  # until the fault takes effect
            time.sleep(0.1)
        took = None if soak.wait_ready() is None else time.monotonic() - at
        if not restart_serve:
            time.sleep(1)
            orphans = alive(must_go)
        rows.append((number, kind, took, orphans))
        print(f"  fault {number:2d} {kind:16} ready again after {'NOT' if took is None else f'{took:.1f} s'}; "
              f"orphans {orphans}", flush=True)
        if took is None:
            break
    return rows


def report(rows: list[Row], streams: list[StreamRecord], faults: int) -> int:
    cut = [s for s in streams if s.tokens < MAX_TOKENS]
    cut_as_complete = [s for s in cut if s.outcome == "complete"]
    recovered = sum(1 for row in rows if row[2] is not None)
    orphans = sum(row[3] for row in rows)
    print()
    print(f"{'#':>3} {'fault':16} {'recovered':>9} {'fault -> ready s':>17} {'orphans':>8}")
    for number, kind, took, left in rows:
        print(f"{number:3d} {kind:16} {'yes' if took is not None else 'NO':>9} "
              f"{'' if took is None else f'{took:.1f}':>17} {left:8d}")
    codes = ", ".join(sorted({s.outcome for s in cut if s.outcome != "complete"}))
    print(f"\nstreams: {len(streams)} in all, {len(cut)} cut by a fault: {len(cut) - len(cut_as_complete)} "
          f"reported interrupted ({codes}), {len(cut_as_complete)} reported complete")
    met = recovered == faults and orphans == 0 and not cut_as_complete
    print(f"recovered {recovered}/{faults}, orphans {orphans}, cut streams reported complete "
          f"{len(cut_as_complete)}: goal {'met' if met else 'MISSED'}")
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    from qwenops.tinymodel import build_tiny_model

    model = build_tiny_model(REPO / ".state" / "test-models" / "qwen3-tiny").path
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        (state / "models").mkdir()
        (state / "models" / "qwen3-tiny").symlink_to(model)
        (state / "soak-profiles").mkdir()
        (state / "soak-profiles" / "soak.yaml").write_text(PROFILE)
        soak = Soak(state, free_port())
        soak.start_serve()
        first = soak.wait_ready()
        print(f"soak: {args.faults} faults, {args.clients} streaming clients, first ready after "
              f"{first if first is None else round(first, 1)} s", flush=True)
        clients = [threading.Thread(target=soak.client, daemon=True) for _ in range(args.clients)]
        for thread in clients:
            thread.start()
        try:
            rows = run_faults(soak, args.faults, random.Random(args.seed))
        finally:
            soak.stop.set()
            for thread in clients:
                thread.join(timeout=90)
            if soak.serve is not None and soak.serve.poll() is None:
                soak.serve.send_signal(signal.SIGTERM)
                soak.serve.wait(60)
    return report(rows, soak.streams, args.faults)


if __name__ == "__main__":
    raise SystemExit(main())
