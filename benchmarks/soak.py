"""Soak `qwenops serve` on the real vLLM CPU engine: faults at random moments while clients stream.

    python benchmarks/soak.py [--faults 20] [--seed 1] [--clients 2] [--resume-clients 2]
                              [--gateway-clients 1] [--quick] [--verbose]

Fault kinds, in turn: SIGKILL of the API server, of EngineCore, of a worker; SIGSTOP of EngineCore
(the progress watchdog's case); SIGKILL of qwenops itself, followed by a new `qwenops serve`. For each:
recovered or not, the time from the fault to ready again, the processes left behind, and how the
streams the fault cut were reported. Three kinds of clients stream throughout:

- plain clients (`--clients`, no resume): a stream counts as cut when it ended without its full answer
  (every request asks for `max_tokens` with `ignore_eos`, so a whole answer's usage chunk says exactly
  that many); a cut stream reported as a clean finish is the failure this looks for.
- library clients with resume (`--resume-clients`: `astream_chat(..., resume=Resume())`, temperature 0,
  `ignore_eos`, `RESUME_MAX_TOKENS` tokens, prompts in turn): every chat is compared, token ids and
  text, with that prompt's uncut reference answer, streamed once before the first fault. A chat is
  lost when it ends in an error after its request was accepted; a cut chat is one with a resumed
  delta. Per fault: the time from the fault to ready again (restart) beside the time from the fault to
  the first resumed token of each chat it cut (the wait a caller sees added).
- gateway clients (`--gateway-clients`): the same chats through `qwenops gateway` (started beside
  `qwenops serve`, resuming by default), one WebSocket per client, compared by text (the gateway's
  frames carry no token ids); a cut chat is one with a `resumed` frame.

Goals: every fault recovered, 0 orphans, 0 cut plain streams reported as complete, 0 chats lost,
every cut chat resumed and equal to its reference. `--quick` is a smoke check of the script itself
(3 faults, one client of each kind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MAX_TOKENS = 120
# Long enough that most faults land inside a resumed chat (the tiny model streams ~100-300 tokens/s on
# 2 loaded cores), short enough that the reference answers take seconds.
RESUME_MAX_TOKENS = 480
PROMPTS = ("Tell me about the sea.", "Name three colours.", "Why is the sky blue?")
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


@dataclass(frozen=True)
class Reference:
    """A prompt's uncut answer at temperature 0 (ignore_eos, RESUME_MAX_TOKENS)."""

    token_ids: tuple[int, ...]
    text: str


@dataclass
class ChatRecord:
    """One library chat with resume: what it delivered, compared with its prompt's reference."""

    prompt: str
    started: float  # perf_counter (the clock of ChatDelta.arrived_s)
    ended: float
    token_ids: tuple[int, ...]
    text: str
    resumed: list[tuple[float, int, float, int]]  # (arrived_s, after_tokens, gap_ms, attempt) per resumed delta
    outcome: str  # "complete", "refused" (the first request never reached a server), or the error's code
    equal: bool  # token ids and text equal to the reference (the gateway's: text)
    first_token_s: float | None = None
    via: str = "library"  # or "gateway"


@dataclass
class Soak:
    state_dir: Path
    port: int
    serve: subprocess.Popen[bytes] | None = None
    streams: list[StreamRecord] = field(default_factory=list)
    chats: list[ChatRecord] = field(default_factory=list)
    references: dict[str, Reference] = field(default_factory=dict)
    verbose: bool = False
    gateway: subprocess.Popen[bytes] | None = None
    gateway_port: int = 0

    def env(self) -> dict[str, str]:
        return {**os.environ, "QWENOPS_STATE_DIR": str(self.state_dir),
                "QWENOPS_PROFILES_DIR": str(self.state_dir / "soak-profiles")}

    def start_gateway(self) -> None:
        """`qwenops gateway` in front of the server, resuming (its default); waits until it answers."""
        self.gateway_port = free_port()
        log = (self.state_dir / "gateway.log").open("wb")
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "qwenops", "gateway", "--upstream", self.base_url, "--port", str(self.gateway_port),
             "--queue-deadline", "600", "--idle-timeout", "3600", "--log-level", "warning"],
            env=self.env(), stdout=log, stderr=log, start_new_session=True, cwd=REPO)
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.gateway_port}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit("soak: qwenops gateway did not answer /healthz within 60 s")

    def gateway_client(self, number: int) -> None:
        asyncio.run(self._gateway_chats(number))

    async def _gateway_chats(self, number: int) -> None:
        """Chats through the gateway, prompts in turn, one WebSocket (opened again if it closes)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        turn, sent = number, 0
        while not self.stop.is_set():
            try:
                async with connect(f"ws://127.0.0.1:{self.gateway_port}/ws/chat", proxy=None, compression=None,
                                   max_size=None, open_timeout=30, ping_interval=None) as ws:
                    while not self.stop.is_set():
                        # off the event loop, so the WebSocket's keepalive pings are answered meanwhile
                        if not await asyncio.to_thread(self.ready):
                            await asyncio.sleep(0.2)
                            continue
                        prompt = PROMPTS[turn % len(PROMPTS)]
                        turn, sent = turn + 1, sent + 1
                        await self._gateway_chat(ws, f"g{number}-{sent}", prompt)
            except (OSError, WebSocketException) as exc:
                print(f"    gateway client {number}: the connection failed ({exc!r}); opening another", flush=True)
                await asyncio.sleep(1)

    async def _gateway_chat(self, ws: Any, chat_id: str, prompt: str) -> None:
        import json

        from websockets.exceptions import WebSocketException

        started = time.perf_counter()
        text: list[str] = []
        resumed: list[tuple[float, int, float, int]] = []
        first: float | None = None
        outcome = "complete"
        try:
            await ws.send(json.dumps({"type": "chat", "id": chat_id, "messages": [{"role": "user", "content": prompt}],
                                      "max_tokens": RESUME_MAX_TOKENS, "temperature": 0.0, "ignore_eos": True}))
            while True:
                frame = json.loads(await ws.recv())
                now = time.perf_counter()
                if frame.get("id") != chat_id:
                    continue
                kind = frame.get("type")
                if kind == "delta":
                    text.append(frame.get("content") or frame.get("reasoning") or "")
                    first = first if first is not None else now
                elif kind == "resumed":
                    resumed.append((now, int(frame["after_tokens"]), float(frame["gap_ms"]), len(resumed) + 1))
                elif kind == "done":
                    break
                elif kind == "error":
                    outcome = str(frame.get("code"))
                    break
        except WebSocketException:
            outcome = "gateway_connection_closed"
            raise
        finally:
            whole = "".join(text)
            equal = outcome == "complete" and whole == self.references[prompt].text
            chat = ChatRecord(prompt, started, time.perf_counter(), (), whole, resumed, outcome, equal, first,
                              via="gateway")
            with self.lock:
                self.chats.append(chat)
            if self.verbose:
                print(f"    gateway chat {prompt[:12]!r}: {outcome}, {len(whole)} characters in "
                      f"{chat.ended - started:.1f} s, resumed {resumed}, equal {equal}", flush=True)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_serve(self) -> None:
        env = self.env()
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

    def reference(self, prompt: str) -> Reference:
        """The uncut answer, once per prompt, before any fault (resume on, so a cut here would show)."""
        ids, text, resumed = self._chat(prompt, [], [])
        if resumed:
            raise SystemExit(f"soak: the reference answer to {prompt!r} was cut before any fault")
        if len(ids) != RESUME_MAX_TOKENS:
            raise SystemExit(f"soak: the reference answer to {prompt!r} has {len(ids)} tokens, not {RESUME_MAX_TOKENS}")
        return Reference(tuple(ids), text)

    def _chat(self, prompt: str, resumed: list[tuple[float, int, float, int]], first: list[float],
              ) -> tuple[list[int], str, list[tuple[float, int, float, int]]]:
        """One chat with resume: its token ids and text; `resumed` and `first` (the first token's
        arrival) are filled as it goes, so a chat that fails still tells them."""
        from qwenops.stream import Resume
        from qwenops.stream.client import Timeouts, stream_chat

        ids: list[int] = []
        text: list[str] = []
        # read_s above the watchdog's stall confirmation (stall_timeout_s 8 + probe 4): a SIGSTOPped engine
        # is restarted, which cuts the stream, before the read times out (a timeout is never resumed).
        for delta in stream_chat([{"role": "user", "content": prompt}], base_url=self.base_url, model="Qwen3-14B",
                                 max_tokens=RESUME_MAX_TOKENS, temperature=0.0,
                                 extra_body={"ignore_eos": True}, timeouts=Timeouts(connect_s=5, read_s=60),
                                 resume=Resume(attempts=5, deadline_s=600, ready_s=300)):
            if delta.resumed is not None:
                r = delta.resumed
                resumed.append((delta.arrived_s, r.after_tokens, r.gap_ms, r.attempt))
            if delta.token_ids is not None:
                ids.extend(delta.token_ids)
                if not first and delta.token_ids:
                    first.append(delta.arrived_s)
            text.append(delta.content or delta.reasoning_content)
        return ids, "".join(text), resumed

    def resume_client(self, number: int) -> None:
        """Chats with resume, prompts in turn, each compared with its prompt's reference."""
        from qwenops.errors import QwenopsError, UnreachableError

        turn = number
        while not self.stop.is_set():
            if not self.ready():
                time.sleep(0.2)
                continue
            prompt = PROMPTS[turn % len(PROMPTS)]
            turn += 1
            started = time.perf_counter()
            resumed: list[tuple[float, int, float, int]] = []
            first: list[float] = []
            ids: list[int] = []
            text = ""
            outcome = "complete"
            try:
                ids, text, _ = self._chat(prompt, resumed, first)
            except UnreachableError as exc:
                # The first request refused: the chat never started (the server went down between the
                # ready check and the connect). With resume under way, unreachable is waited out instead.
                outcome = "refused" if not resumed else exc.code
            except QwenopsError as exc:
                outcome = exc.code
            reference = self.references[prompt]
            equal = outcome == "complete" and tuple(ids) == reference.token_ids and text == reference.text
            chat = ChatRecord(prompt, started, time.perf_counter(), tuple(ids), text, resumed, outcome, equal,
                              first[0] if first else None)
            with self.lock:
                self.chats.append(chat)
            if self.verbose:
                print(f"    chat {prompt[:12]!r}: {outcome}, {len(ids)} tokens in {chat.ended - started:.1f} s, first "
                      f"token after {'-' if not first else f'{first[0] - started:.1f} s'}, resumed {resumed}, "
                      f"equal {equal}", flush=True)


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


# fault number, kind, seconds from the fault to ready, orphans, when (perf_counter, ChatDelta.arrived_s' clock)
Row = tuple[int, str, "float | None", int, float]


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
        at = time.perf_counter()
        must_go, restart_serve = fault(soak, kind)
        orphans = 0
        if restart_serve:
            time.sleep(5)  # the guard's promise: nothing left 5 s after SIGKILL of qwenops
            orphans = alive(must_go)
            soak.start_serve()
        while soak.ready() and time.perf_counter() - at < 30:  # until the fault takes effect
            time.sleep(0.1)
        took = None if soak.wait_ready() is None else time.perf_counter() - at
        if not restart_serve:
            time.sleep(1)
            orphans = alive(must_go)
        rows.append((number, kind, took, orphans, at))
        print(f"  fault {number:2d} {kind:16} ready again after {'NOT' if took is None else f'{took:.1f} s'}; "
              f"orphans {orphans}", flush=True)
        if took is None:
            break
    return rows


def attribute(rows: list[Row], chats: list[ChatRecord]) -> dict[int, list[float]]:
    """Per fault number, the seconds from the fault to each first resumed token of the chats it cut
    (a resumed delta belongs to the last fault before its cut: arrival - gap)."""
    waits: dict[int, list[float]] = {row[0]: [] for row in rows}
    for chat in chats:
        for arrived_s, _after, gap_ms, _attempt in chat.resumed:
            cut_s = arrived_s - gap_ms / 1000.0
            before = [row for row in rows if row[4] <= cut_s + 0.5]
            if before:
                waits[before[-1][0]].append(arrived_s - before[-1][4])
    return waits


def chat_totals(label: str, chats: list[ChatRecord], rows: list[Row], in_flight: int, compared: str) -> bool:
    """Print one kind of client's totals; whether its goals were met (0 lost, every cut chat resumed and
    equal, every uncut chat equal, none left running)."""
    refused = [c for c in chats if c.outcome == "refused"]
    started = [c for c in chats if c.outcome != "refused"]
    lost = [c for c in started if c.outcome != "complete"]
    cut_chats = [c for c in started if c.resumed]
    resumed_ok = [c for c in cut_chats if c.outcome == "complete"]
    equal = [c for c in cut_chats if c.equal]
    uncut_unequal = [c for c in started if not c.resumed and c.outcome == "complete" and not c.equal]
    at = [row[4] for row in rows]
    spanning = [c for c in started if any(c.started < t < c.ended for t in at)]
    uncut_spanning = [c for c in spanning if not c.resumed]
    mid_answer = [c for c in uncut_spanning
                  if c.first_token_s is not None and any(c.first_token_s < t < c.ended for t in at)]
    codes = f" ({', '.join(sorted({c.outcome for c in lost}))})" if lost else ""
    print(f"{label}: {len(started)} chats started ({len(refused)} more refused at their first connect, never "
          f"started; {in_flight} clients still in a chat at the end), {len(lost)} lost{codes}; {len(cut_chats)} cut: "
          f"{len(resumed_ok)} resumed, {len(equal)} equal to the reference ({compared}); uncut chats unequal to the "
          f"reference: {len(uncut_unequal)}")
    print(f"  in flight at a fault: {len(spanning)}, {len(uncut_spanning)} of them without a resumed mark "
          f"({len(mid_answer)} of those past their first token)")
    resumes = [r for c in cut_chats for r in c.resumed]
    if resumes:
        print(f"  resumed: {len(resumes)} times (attempts {sorted({r[3] for r in resumes})}), after "
              f"{min(r[1] for r in resumes)}-{max(r[1] for r in resumes)} tokens; gap (cut seen -> first resumed "
              f"token) median {statistics.median(r[2] for r in resumes) / 1000:.1f} s")
    return not lost and not uncut_unequal and len(equal) == len(cut_chats) and in_flight == 0


def report(rows: list[Row], streams: list[StreamRecord], chats: list[ChatRecord], faults: int,
           in_flight: dict[str, int]) -> int:
    cut = [s for s in streams if s.tokens < MAX_TOKENS]
    cut_as_complete = [s for s in cut if s.outcome == "complete"]
    recovered = sum(1 for row in rows if row[2] is not None)
    orphans = sum(row[3] for row in rows)
    library = [c for c in chats if c.via == "library"]
    gateway = [c for c in chats if c.via == "gateway"]
    waits = {"library": attribute(rows, library), "gateway": attribute(rows, gateway)}
    print()
    print(f"{'#':>3} {'fault':16} {'recovered':>9} {'fault -> ready s':>17} {'orphans':>8}   "
          f"{'resumed: library':>16} {'fault -> resumed s':>18}   {'gateway':>7} {'fault -> resumed s':>18}")
    for number, kind, took, left, _at in rows:
        cells = []
        for via in ("library", "gateway"):
            mine = waits[via][number]
            added = f"{statistics.median(mine):.1f}" + (f" ({max(mine):.1f})" if len(mine) > 1 else "") if mine else "-"
            cells.append(f"{len(mine):{16 if via == 'library' else 7}d} {added:>18}")
        print(f"{number:3d} {kind:16} {'yes' if took is not None else 'NO':>9} "
              f"{'' if took is None else f'{took:.1f}':>17} {left:8d}   {cells[0]}   {cells[1]}")
    print("(fault -> resumed: median over the chats the fault cut, (max) when more than one)")
    codes = ", ".join(sorted({s.outcome for s in cut if s.outcome != "complete"}))
    print(f"\nplain streams: {len(streams)} in all, {len(cut)} cut by a fault: {len(cut) - len(cut_as_complete)} "
          f"reported interrupted ({codes}), {len(cut_as_complete)} reported complete")
    met_library = chat_totals("library clients with resume", library, rows, in_flight["library"], "token ids and text")
    met_gateway = chat_totals("gateway clients", gateway, rows, in_flight["gateway"], "text")
    restarts = [row[2] for row in rows if row[2] is not None]
    for via in ("library", "gateway"):
        all_waits = [w for mine in waits[via].values() for w in mine]
        if all_waits and restarts:
            print(f"{via}: fault -> ready median {statistics.median(restarts):.1f} s; fault -> first resumed token "
                  f"median {statistics.median(all_waits):.1f} s, max {max(all_waits):.1f} s")
    lost = sum(c.outcome not in ("complete", "refused") for c in chats)
    cut_chats = [c for c in chats if c.resumed and c.outcome != "refused"]
    equal = sum(c.equal for c in cut_chats)
    met = (recovered == faults and orphans == 0 and not cut_as_complete and met_library and met_gateway)
    print(f"recovered {recovered}/{faults}, orphans {orphans}, cut streams reported complete "
          f"{len(cut_as_complete)}, chats lost {lost}, cut chats resumed and equal {equal}/{len(cut_chats)}: "
          f"goal {'met' if met else 'MISSED'}")
    return 0 if met else 1


def run(soak: Soak, args: argparse.Namespace) -> tuple[list[Row], dict[str, int]]:
    """The references, the clients and the faults; the fault rows and how many clients of each kind were
    still in a chat at the end."""
    rows: list[Row] = []
    clients: list[threading.Thread] = []
    resuming: list[threading.Thread] = []
    gateways: list[threading.Thread] = []
    try:
        if args.gateway_clients:
            soak.start_gateway()
        if args.resume_clients or args.gateway_clients:
            for prompt in PROMPTS:
                soak.references[prompt] = soak.reference(prompt)
            print(f"references: {len(PROMPTS)} prompts x {RESUME_MAX_TOKENS} tokens, uncut", flush=True)
        clients = [threading.Thread(target=soak.client, daemon=True) for _ in range(args.clients)]
        resuming = [threading.Thread(target=soak.resume_client, args=(n,), daemon=True)
                    for n in range(args.resume_clients)]
        gateways = [threading.Thread(target=soak.gateway_client, args=(n,), daemon=True)
                    for n in range(args.gateway_clients)]
        for thread in clients + resuming + gateways:
            thread.start()
        rows = run_faults(soak, args.faults, random.Random(args.seed))
    finally:
        soak.stop.set()
        for thread in clients:
            thread.join(timeout=90)
        for thread in resuming + gateways:  # a chat cut by the last fault finishes its resumed answer
            thread.join(timeout=300)
        if soak.gateway is not None and soak.gateway.poll() is None:
            soak.gateway.send_signal(signal.SIGTERM)
            soak.gateway.wait(60)
        if soak.serve is not None and soak.serve.poll() is None:
            soak.serve.send_signal(signal.SIGTERM)
            soak.serve.wait(60)
    in_flight = {"library": sum(t.is_alive() for t in resuming), "gateway": sum(t.is_alive() for t in gateways)}
    return rows, in_flight


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=2, help="plain streaming clients (no resume)")
    parser.add_argument("--resume-clients", type=int, default=2, help="library clients with resume")
    parser.add_argument("--gateway-clients", type=int, default=1, help="clients through qwenops gateway")
    parser.add_argument("--quick", action="store_true", help="a smoke check: 3 faults, one client of each kind")
    parser.add_argument("--verbose", action="store_true", help="a line per chat with resume as it ends")
    args = parser.parse_args()
    if args.quick:
        args.faults, args.clients, args.resume_clients, args.gateway_clients = 3, 1, 1, 1
    if args.faults < 1 or min(args.clients, args.resume_clients, args.gateway_clients) < 0:
        parser.error("--faults must be >= 1, --clients, --resume-clients and --gateway-clients >= 0")
    from qwenops.tinymodel import build_tiny_model

    model = build_tiny_model(REPO / ".state" / "test-models" / "qwen3-tiny").path
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        (state / "models").mkdir()
        (state / "models" / "qwen3-tiny").symlink_to(model)
        (state / "soak-profiles").mkdir()
        (state / "soak-profiles" / "soak.yaml").write_text(PROFILE)
        soak = Soak(state, free_port(), verbose=args.verbose)
        soak.start_serve()
        first = soak.wait_ready()
        print(f"soak: {args.faults} faults, {args.clients} plain streaming clients, {args.resume_clients} library "
              f"clients with resume, {args.gateway_clients} through the gateway, first ready after "
              f"{first if first is None else round(first, 1)} s", flush=True)
        rows, in_flight = run(soak, args)
    return report(rows, soak.streams, soak.chats, args.faults, in_flight)


if __name__ == "__main__":
    raise SystemExit(main())
