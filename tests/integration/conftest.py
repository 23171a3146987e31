"""The real vLLM CPU server, shared by integration tests.

`vllm_server` (session) starts one server for the whole run: vLLM's CPU engine takes ~50 s to
become ready on 2 cores, so tests share it and must not kill it. Tests that kill or break a server
use `disposable_server` (a fresh one each time). The server runs exactly the argv `qwenops render
flags --profile cpu-tiny` prints (with the `--set` overrides a test asks for, if any), in its own
process group, and the whole group is killed after.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import REPO

# A hang guard: vLLM on a loaded 2-core machine takes minutes to be ready.
READY_TIMEOUT_S = float(os.environ.get("QWENOPS_TEST_READY_TIMEOUT", "800"))


@dataclass
class RunningServer:
    base_url: str
    model: str
    port: int
    pgid: int
    model_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        """Kill the whole process group (EngineCore and workers too) and reap the leader."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, sig)
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_engine() -> None:
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or the torchvision breakage the install script fixes
        pytest.fail(
            f"the vLLM CPU engine is not usable here ({type(exc).__name__}: {exc}); "
            "install it with scripts/install_cpu_engine.sh, or deselect with -m 'not engine'",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny Qwen3 model, built once and cached under .state/ (the builder skips a cached build)."""
    from qwenops.tinymodel import build_tiny_model

    return build_tiny_model(REPO / ".state" / "test-models" / "qwen3-tiny").path


def start_server(
    model_dir: Path, log_dir: Path, *, port: int | None = None, overrides: dict[str, str] | None = None
) -> RunningServer:
    """cpu-tiny on `port`; `overrides` are profile fields set as `--set FIELD=VALUE` would set them."""
    from qwenops.config.loader import load_profile
    from qwenops.render.vllm import vllm_argv

    _require_engine()
    port = port or free_port()
    cli = {**(overrides or {}), "port": str(port), "model": str(model_dir)}
    profile = load_profile("cpu-tiny", env={}, cli_overrides=cli)
    argv = vllm_argv(profile, state_dir=model_dir.parent, python=sys.executable)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"vllm-{port}.log"
    env = {**os.environ, **profile.env, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = RunningServer(
        base_url=f"http://127.0.0.1:{port}", model=profile.api_model_name, port=port, pgid=process.pid,
        model_dir=model_dir, log_path=log_path, process=process,
    )
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def kv_bytes_overrides(kv_bytes: int) -> dict[str, object]:
    """Profile overrides for cpu-tiny with a KV cache of KV_BYTES: its env without VLLM_CPU_KVCACHE_SPACE
    (which would override the byte count) and its extra_args plus `--kv-cache-memory-bytes`. The rest of
    cpu-tiny's env and flags stay: without them vLLM starts a worker process of its own (~15 s more)."""
    from qwenops.config.loader import load_profile

    profile = load_profile("cpu-tiny", env={}, cli_overrides={})
    env = {key: value for key, value in profile.env.items() if key != "VLLM_CPU_KVCACHE_SPACE"}
    return {"env": env, "extra_args": [*profile.extra_args, "--kv-cache-memory-bytes", str(kv_bytes)]}


def _wait_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                tail = server.log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"vLLM exited with {server.process.returncode} before ready:\n{tail}", pytrace=False)
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/health").status_code == 200:
                    models = client.get("/v1/models").json()
                    if any(m.get("id") == server.model for m in models.get("data", [])):
                        return
            time.sleep(0.5)
    tail = server.log_path.read_text(errors="replace")[-3000:]
    pytest.fail(f"vLLM not ready after {READY_TIMEOUT_S:.0f} s:\n{tail}", pytrace=False)


GENERATED_TOKENS = "vllm:generation_tokens_total"
FINISHED_REQUESTS = "vllm:request_success_total"  # labelled by finish reason: stop, length, abort, ...


def server_metrics(base_url: str, *, timeout_s: float = 30.0) -> dict[str, float]:
    """vLLM's Prometheus samples on /metrics by name, each summed over its labels (engine, reason)."""
    from prometheus_client.parser import text_string_to_metric_families  # a dependency of vLLM

    text = httpx.get(base_url + "/metrics", timeout=timeout_s).raise_for_status().text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    # A profile with --disable-log-stats serves /metrics without the counters: fail, never wait forever.
    missing = {GENERATED_TOKENS, FINISHED_REQUESTS} - values.keys()
    assert not missing, f"{base_url}/metrics has no {sorted(missing)} (is --disable-log-stats set?)"
    return values


def wait_for_generated_tokens(server: RunningServer, at_least: float, *, timeout_s: float = 600) -> dict[str, float]:
    """Poll /metrics until the server has generated `at_least` tokens; return that reading.

    For tests that must act while streams are mid-answer: the CPU engine delivers tokens in bursts
    under load, so no fixed sleep is right on a busy machine; this waits for the evidence instead.
    vLLM counts an engine step's tokens after it has pushed them to the requests' output queues, so
    N counted are N on their way to the streams."""
    deadline = time.monotonic() + timeout_s
    seen = 0.0
    while True:
        if server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"vLLM exited with {server.process.returncode} after {seen:g} tokens:\n{tail}",
                        pytrace=False)
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"vLLM generated {seen:g} of the {at_least:g} tokens awaited within {timeout_s:g} s",
                        pytrace=False)
        try:
            reading = server_metrics(server.base_url, timeout_s=left)
        except httpx.TimeoutException:
            continue  # an event loop busy delivering tokens answers late; the deadline still holds
        seen = reading[GENERATED_TOKENS]
        if seen >= at_least:
            return reading
        time.sleep(0.02)  # a poll interval, not a guess at timing: only the count ends the wait


LONG_CONTEXT = 32768


def long_context_copy(model_dir: Path, out: Path) -> Path:
    """MODEL_DIR's weights (linked) in OUT, with the context length raised to LONG_CONTEXT, for tests that
    must act while a stream is still running: on 2 cores the CPU engine streams 480 tokens in about a
    second, faster than a test can notice."""
    out.mkdir()
    for source in model_dir.iterdir():
        if source.name in ("config.json", "tokenizer_config.json"):
            data = json.loads(source.read_text())
            for key in ("max_position_embeddings", "model_max_length"):
                if key in data:
                    data[key] = LONG_CONTEXT
            (out / source.name).write_text(json.dumps(data, indent=2))
        else:
            (out / source.name).symlink_to(source)
    return out


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("vllm-logs"))
    yield server
    server.stop()


@pytest.fixture
def disposable_server(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """A factory: call it (with another model dir or profile overrides if needed) to get a fresh server
    that this test may kill; all are stopped after."""
    started: list[RunningServer] = []

    def start(model_dir: Path | None = None, **overrides: str) -> RunningServer:
        server = start_server(model_dir or tiny_model_dir, tmp_path / "vllm-logs", overrides=overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


ENGINE_FIXTURES = {"vllm_server", "disposable_server", "tiny_model_dir", "long_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One way to say a test needs the real engine: the `engine` mark, written on the test or its module
    (so `-m 'not engine'` skips them all). A test that uses an engine fixture without it is a collection
    error naming it, rather than a mark added behind the reader's back."""
    unmarked = [item.nodeid for item in items if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("engine") is None]
    if unmarked:
        raise pytest.UsageError(f"these tests use the vLLM engine but are not marked `engine`: {', '.join(unmarked)}")


# ------------------------------------------------------------- `qwenops serve` as an operator runs it

SERVE_PORTS = range(18350, 18400)  # 18310-18349: test_supervisor_process


def worker_share(ports: range) -> range:
    """This pytest-xdist worker's share of PORTS (every n-th port, from its own offset), or all of PORTS
    when the suite runs in one process: two workers never pick the same port, whatever their timing."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if count <= 1 or not worker.startswith("gw") or not worker[2:].isdigit():
        return ports
    return ports[int(worker[2:]) % count::count]


def free_port_in(ports: range) -> int:
    """A free port of PORTS (fixed ranges, so a test's servers are easy to find and clean up; split between
    pytest-xdist workers), tried from a random place in the range: two runs of the suite on one machine
    seldom pick the same port before the server they start has bound it."""
    ports = worker_share(ports)
    start = random.randrange(len(ports))
    for port in itertools.chain(ports[start:], ports[:start]):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def free_serve_port() -> int:
    return free_port_in(SERVE_PORTS)


@dataclass
class Serve:
    """`python -m qwenops serve` in its own process group, with a real sd_notify socket."""

    process: subprocess.Popen[str]
    notify: socket.socket
    port: int
    messages: list[tuple[float, str]] = field(default_factory=list)
    server_pids: set[int] = field(default_factory=set)

    def read(self) -> None:
        while True:
            try:
                self.messages.append((time.monotonic(), self.notify.recv(4096).decode()))
            except OSError:
                return

    def wait_message(self, prefix: str, *, after: int = 0, timeout_s: float = 800) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for index, (_, text) in enumerate(self.messages[after:], start=after):
                if text.startswith(prefix):
                    return index
            assert self.process.poll() is None, f"serve exited {self.process.returncode}: {self.output()}"
            self.remember_server_pids()
            time.sleep(0.1)
        raise AssertionError(f"no {prefix!r} within {timeout_s} s; got {[m for _, m in self.messages]}")

    def remember_server_pids(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.server_pids |= {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)}

    def output(self) -> str:
        return "" if self.process.stderr is None else self.process.stderr.read()[-3000:]


@pytest.fixture
def state_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    (tmp_path / "state" / "models").mkdir(parents=True)
    (tmp_path / "state" / "models" / "qwen3-tiny").symlink_to(tiny_model_dir)
    return tmp_path / "state"


@pytest.fixture
def long_context_state_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A state dir whose qwen3-tiny is long_context_copy's; serve it with `--set max_model_len=LONG_CONTEXT`."""
    (tmp_path / "state" / "models").mkdir(parents=True)
    long_context_copy(tiny_model_dir, tmp_path / "state" / "models" / "qwen3-tiny")
    return tmp_path / "state"


@pytest.fixture
def kill_tolerant_profile(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """cpu-tiny whose supervisor tolerates the kills a resume test makes: a kill that lands after the
    whole answer is tried again, and the default 3 quick failures in 10 minutes would end serve FATAL
    before the test is done."""
    import yaml

    directory = tmp_path_factory.mktemp("profiles")
    (directory / "cpu-tiny-kills.yaml").write_text(yaml.safe_dump(
        {"extends": "cpu-tiny", "supervise": {"max_quick_failures": 10}}), encoding="utf-8")
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    return "cpu-tiny-kills"


def start_serve(state_dir: Path, *args: str) -> Iterator[Serve]:
    name = f"qwenops-engine-test-{uuid.uuid4().hex}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("\0" + name)
    notify.settimeout(0.2)
    port = free_serve_port()
    env = {**os.environ, "QWENOPS_STATE_DIR": str(state_dir), "NOTIFY_SOCKET": "@" + name}
    process = subprocess.Popen(
        [sys.executable, "-m", "qwenops", "serve", "--port", str(port), "--quiet", "--json", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    serve = Serve(process, notify, port)
    def read_while_running() -> None:
        while process.poll() is None:
            serve.read()

    reader = threading.Thread(target=read_while_running, daemon=True)
    reader.start()
    try:
        yield serve
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        for pid in serve.server_pids:  # the safety net: never leave an engine behind, even on failure
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        process.wait(10)
        notify.close()
