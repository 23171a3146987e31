"""Isolation for every test: no QWENOPS_* from the developer's shell, a private state dir."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example time limit for property tests: hypothesis' default (200 ms) is a wall-clock threshold, and a
# loaded machine is slow, not wrong (one CI run: a 0.3 ms percentile took 350 ms once). pytest-timeout still
# guards against a hang.
settings.register_profile("qwenops", deadline=None)
settings.load_profile("qwenops")

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
# A fixed state dir makes rendered paths (cpu-tiny's model dir) the same on every machine.
GOLDEN_STATE_DIR = "/var/lib/qwenops"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="Rewrite golden files under tests/golden/ from the current output instead of comparing.",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C must reach the commands the tests interrupt. A shell starts a background job (`cmd &`)
    with SIGINT ignored; exec keeps an ignored signal (a handled one is reset to the default), and
    Python raises KeyboardInterrupt only where SIGINT was not ignored at its start. So a suite run from
    such a job saw its SIGINT tests time out: here the signal is handled again before any child starts."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The test files that take longest (they start vLLM the most times), longest first: .ci/run runs the suite
# in two workers, a file each (pytest-xdist, --dist loadfile), and hands files out in collection order, so a
# long file handed out last runs alone at the end while the other worker has nothing left. A file not
# listed keeps its place after these; tests within a file keep their order.
SLOWEST_FIRST = (
    "test_serve_hardened.py", "test_troubleshoot_faq.py", "test_serve_engine.py", "test_stream_resume.py",
    "test_tune_engine.py", "test_gateway_resume.py", "test_gateway_engine.py", "test_smoke_stream.py",
    "test_container_entrypoint.py", "test_stream_client.py", "test_troubleshoot_live.py",
    "test_monitoring_engine.py", "test_doctor_live.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("QWENOPS_") or key in ("VLLM_API_KEY", "NOTIFY_SOCKET"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("QWENOPS_STATE_DIR", str(tmp_path / "state"))
    # Never the developer's ./.env; a named env file must exist, and tests that list tmp_path see only theirs.
    empty_env_file = tmp_path_factory.mktemp("env") / "empty.env"
    empty_env_file.touch()
    monkeypatch.setenv("QWENOPS_ENV_FILE", str(empty_env_file))
    monkeypatch.setenv("NO_COLOR", "1")
    # The terminal's size must not change rendered text (rich sizes a pipe by COLUMNS): pytest-xdist hands
    # its workers COLUMNS=80 and LINES=24, a shell may export them.
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    # A checkpoint in the developer's Hugging Face cache must not change verdicts, plans or model lookups.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    yield


Golden = Callable[[str, str], None]  # the golden fixture: golden(relative_path, text)


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Golden:
    """golden(relative_path, text): compare with tests/golden/<path>, or rewrite it with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(relative: str, text: str) -> None:
        path = GOLDEN / relative
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
        assert text == path.read_text(encoding="utf-8"), f"{relative} differs from its golden file"

    return check
