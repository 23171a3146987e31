"""Nothing a request does blocks the gateway's event loop on a file: the chat page is read once, when the
app is made; serve's records (the FATAL record, the run record) are read in a worker thread when a chat
waits for the server, as the supervisor watch reads them."""

from __future__ import annotations

import asyncio
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwenops.gateway.config import Fatal, ServeRecords
from tests.gateway_harness import chat, connect, running_gateway, until_end


def test_the_page_is_read_once_when_the_app_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.conftest import free_port

    html = resources.files("qwenops.gateway").joinpath("page.html").read_text(encoding="utf-8")
    with running_gateway(f"http://127.0.0.1:{free_port()}") as gw:

        def no_files(*_args: Any) -> Any:
            raise AssertionError("the page was read again while serving")

        monkeypatch.setattr("importlib.resources.files", no_files)
        for _ in range(2):
            answer = httpx.get(f"http://127.0.0.1:{gw.config.port}/", timeout=10)
            assert answer.status_code == 200 and answer.text == html
            assert answer.headers["cache-control"] == "no-store"
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_a_waiting_chat_reads_serves_records_off_the_event_loop(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    from tests.integration.conftest import free_port

    readers: list[tuple[str, threading.Thread]] = []
    gave_up_since, describe = ServeRecords.gave_up_since, ServeRecords.describe

    def spied_gave_up_since(self: ServeRecords, since: float) -> Fatal | None:
        readers.append(("gave_up_since", threading.current_thread()))
        return gave_up_since(self, since)

    def spied_describe(self: ServeRecords) -> str:
        readers.append(("describe", threading.current_thread()))
        return describe(self)

    monkeypatch.setattr(ServeRecords, "gave_up_since", spied_gave_up_since)
    monkeypatch.setattr(ServeRecords, "describe", spied_describe)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: the chat waits in the queue, then times out

    async def go(url: str) -> dict[str, Any]:
        async with connect(url) as ws:
            await ws.send(chat("a", "model 3"))
            frames = await until_end(ws, {"a"})
            end: dict[str, Any] = frames["a"][-1]
            return end

    with running_gateway(down, queue_deadline_s=1.0, serve_state_dir=str(tmp_path), serve_profile="p") as gw:
        end = asyncio.run(asyncio.wait_for(go(gw.url), 60))
        loop_thread = gw.thread
    assert end["code"] == "interrupted", end
    assert end["message"].endswith("; qwenops serve --profile p is not running"), end
    assert [name for name, _ in readers] == ["gave_up_since", "describe"]
    assert all(thread is not loop_thread for _, thread in readers), readers
