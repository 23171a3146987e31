"""The sync stream client is generated from the async one (issue #22: no hand-kept sync/async twins):
qwenops/stream/sync_client.py must be exactly what scripts/unasync_stream.py writes from
qwenops/stream/async_client.py, so neither can change without the other."""

from __future__ import annotations

import ast
import importlib.util
import inspect

from tests.conftest import REPO


def _generated() -> str:
    spec = importlib.util.spec_from_file_location("unasync_stream", REPO / "scripts" / "unasync_stream.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    text: str = script.generate(REPO)
    return text


def test_the_sync_client_is_what_the_script_generates() -> None:
    committed = (REPO / "qwenops" / "stream" / "sync_client.py").read_text(encoding="utf-8")
    assert committed == _generated(), (
        "qwenops/stream/sync_client.py differs from what scripts/unasync_stream.py generates from "
        "async_client.py: edit async_client.py and run `python scripts/unasync_stream.py`"
    )


def test_the_generated_client_has_no_async_left() -> None:
    """No coroutine, and no async name the rename table missed (its docstrings may speak of both)."""
    source = (REPO / "qwenops" / "stream" / "sync_client.py").read_text(encoding="utf-8")
    assert source.startswith("# generated from qwenops/stream/async_client.py by scripts/unasync_stream.py")
    for node in ast.walk(ast.parse(source)):
        assert not isinstance(node, (ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await)), ast.dump(node)[:80]
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        assert not name.startswith(("Async", "aiter", "aclos", "anyio")), name
        assert name not in ("aopen_stream", "aread_body", "aevents", "astream_chat", "atrace"), name


def test_the_public_api_is_the_same_on_both_sides() -> None:
    """What the sync and the async client take is one signature: generated, not kept alike by hand."""
    from qwenops.stream import astream_chat, stream_chat

    sync, aio = inspect.signature(stream_chat), inspect.signature(astream_chat)
    assert list(sync.parameters) == list(aio.parameters)
    assert [p.default for p in sync.parameters.values()] == [p.default for p in aio.parameters.values()]
