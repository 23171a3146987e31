"""The gateway while its server restarts, against the synthetic upstream (tests/synthetic_upstream.py)
speaking vLLM's resumption wire (token ids, /v1/completions from ids, /health, /v1/models): a cut answer
is resumed with one `resumed` frame and equals the uncut one; a chat sent during the restart waits in the
queue and completes; the queue's size and deadline; a FATAL that serve records ends every waiting and
resuming chat with its cause; chats never resumed; text mode; `/metrics`. (On the real CPU engine under
`qwenops serve`: tests/integration/test_gateway_resume.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_harness import RunningGateway, chat, connect, receive, running_gateway, text_of, until_end
from tests.polling import poll_until
from tests.synthetic_upstream import SyntheticUpstream, model_answer, model_text

TOKEN = "test-token-0123456789abcdef"
COUNT, CUT = 24, 10


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def deltas_until(ws: Any, chat_id: str, count: int) -> list[dict[str, Any]]:
    """Frames of CHAT_ID until COUNT deltas have arrived (the evidence that the answer streams)."""
    frames: list[dict[str, Any]] = []
    while sum(frame["type"] == "delta" for frame in frames) < count:
        frame = await receive(ws)
        if frame.get("id") == chat_id:
            frames.append(frame)
    return frames


async def wait_on(condition: Any, what: str) -> None:
    await asyncio.to_thread(poll_until, condition, what, 60, 0.02)


def metrics(gw: RunningGateway, **headers: str) -> dict[str, float]:
    """The gateway's /metrics, one value per sample name and labels."""
    answer = httpx.get(f"http://127.0.0.1:{gw.config.port}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


# --------------------------------------------------------------------------------------------- resume


def test_a_cut_answer_resumes_with_one_resumed_frame_and_a_chat_sent_during_the_restart_completes(
        upstream: SyntheticUpstream) -> None:
    async def go(url: str, gw: RunningGateway) -> tuple[list[dict[str, Any]], ...]:
        async with connect(url) as ws, connect(url) as other:
            await ws.send(chat("ref", f"model {COUNT}"))
            reference = (await until_end(ws, {"ref"}))["ref"]
            await ws.send(chat("a", f"restart {COUNT} {CUT}", temperature=0, max_tokens=COUNT))
            before = await deltas_until(ws, "a", CUT)
            await wait_on(lambda: upstream.down, "the upstream went down at the cut")
            await other.send(chat("b", "model 5"))  # sent while the server is down
            await wait_on(lambda: gw.health()["waiting"] == 1, "chat b waits in the queue")
            assert gw.health()["server"] == "down"
            await asyncio.to_thread(upstream.come_back)
            after = (await until_end(ws, {"a"}))["a"]
            during = (await until_end(other, {"b"}))["b"]
            return reference, before + after, during

    with running_gateway(upstream.base_url) as gw:
        reference, frames, during = run(go(gw.url, gw))
        found = metrics(gw)
    resumed = [frame for frame in frames if frame["type"] == "resumed"]
    assert len(resumed) == 1, frames
    assert set(resumed[0]) == {"type", "id", "after_tokens", "gap_ms"}
    assert resumed[0]["id"] == "a" and resumed[0]["after_tokens"] == CUT and resumed[0]["gap_ms"] >= 0
    index = frames.index(resumed[0])
    assert text_of(frames[:index]) == "".join(f"w{t} " for t in model_answer(COUNT)[:CUT])
    assert text_of(frames) == text_of(reference) == model_text(COUNT)
    assert frames[-1] == {"type": "done", "id": "a", "finish_reason": "length",
                          "usage": {"prompt_tokens": 3, "completion_tokens": COUNT, "total_tokens": 3 + COUNT}}
    assert text_of(during) == model_text(5) and during[-1]["type"] == "done"
    # the chat asked for token ids; its continuation went to /v1/completions from them
    chat_body = next(body for body in upstream.counters.bodies if "restart" in str(body.get("messages")))
    assert chat_body["return_token_ids"] is True and chat_body["temperature"] == 0
    continuation = next(body for body in upstream.counters.bodies if "prompt" in body)
    assert continuation["prompt"] == [1, 2, 3, *model_answer(COUNT)[:CUT]]
    assert continuation["max_tokens"] == COUNT - CUT and continuation["temperature"] == 0
    assert found['qwenops_gateway_resumptions_total{outcome=done}'] == 1
    assert found['qwenops_gateway_chats_total{outcome=done}'] == 3


def test_text_mode_shows_a_resumed_answer_as_a_pause_only(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> list[str]:
        async with connect(url + "?mode=text") as ws:
            await ws.send(f"restart {COUNT} {CUT}")  # no max_tokens: the answer ends by itself
            got: list[str] = []
            while len(got) < CUT:
                got.append(await asyncio.wait_for(ws.recv(), 30))
            await wait_on(lambda: upstream.down, "the upstream went down at the cut")
            await asyncio.to_thread(upstream.come_back)
            while "".join(got) != model_text(COUNT):
                got.append(await asyncio.wait_for(ws.recv(), 30))
            await ws.send("tokens 1")  # the next frame is the next answer's: nothing was sent for the pause
            got.append(await asyncio.wait_for(ws.recv(), 30))
            return got

    with running_gateway(upstream.base_url) as gw:
        got = run(go(gw.url))
    assert "".join(got[:-1]) == model_text(COUNT)
    assert got[-1] == "t0 "
    assert not any(text.startswith(("{", "[")) for text in got)


def test_without_resume_a_cut_answer_ends_interrupted(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> list[dict[str, Any]]:
        async with connect(url) as ws:
            await ws.send(chat("a", f"restart {COUNT} {CUT}"))
            frames: list[dict[str, Any]] = (await until_end(ws, {"a"}))["a"]
            return frames

    with running_gateway(upstream.base_url, resume=False) as gw:
        frames = run(go(gw.url))
    assert [frame["type"] for frame in frames].count("delta") == CUT
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "interrupted"
    assert "not resumed" not in frames[-1]["message"]
    assert "return_token_ids" not in upstream.counters.bodies[0]
    assert upstream.counters.paths == ["/v1/chat/completions"]


@pytest.mark.parametrize(("params", "why"), [({"logprobs": True}, "logprobs"),
                                            ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools")])
def test_a_chat_that_is_never_resumed_ends_as_before_saying_why(upstream: SyntheticUpstream,
                                                               params: dict[str, Any], why: str) -> None:
    async def go(url: str) -> list[dict[str, Any]]:
        async with connect(url) as ws:
            await ws.send(chat("a", f"restart {COUNT} {CUT}", **params))
            frames: list[dict[str, Any]] = (await until_end(ws, {"a"}))["a"]
            return frames

    with running_gateway(upstream.base_url) as gw:
        frames = run(go(gw.url))
    assert not any(frame["type"] == "resumed" for frame in frames)
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "interrupted"
    assert f"not resumed: {why}" in frames[-1]["message"]
    assert upstream.counters.paths == ["/v1/chat/completions"]


# --------------------------------------------------------------------------------------------- the queue


def test_the_queue_is_bounded_in_size_and_time() -> None:
    from tests.integration.conftest import free_port

    down = f"http://127.0.0.1:{free_port()}"  # nothing listens

    async def go(url: str, gw: RunningGateway) -> tuple[dict[str, Any], dict[str, Any]]:
        async with connect(url) as ws:
            await ws.send(chat("first", "model 3"))
            await wait_on(lambda: gw.health()["waiting"] == 1, "the first chat waits")
            await ws.send(chat("second", "model 3"))
            frames = await until_end(ws, {"first", "second"})
            return frames["first"][-1], frames["second"][-1]

    with running_gateway(down, queue_size=1, queue_deadline_s=1.0) as gw:
        first, second = run(go(gw.url, gw))
        found = metrics(gw)
    assert second["code"] == "overloaded" and "--queue-size 1" in second["message"]
    assert first["code"] == "interrupted"
    assert f"the server {down} was not ready again within 1 s (--queue-deadline)" in first["message"]
    assert found["qwenops_gateway_chat_errors_total{code=overloaded}"] == 1
    assert found["qwenops_gateway_chat_errors_total{code=interrupted}"] == 1


def write_fatal(state_dir: Path, cause: str, at: float) -> None:
    (state_dir / "serve-p.fatal.json").write_text(json.dumps({"cause": cause, "at": at}), encoding="utf-8")


def test_a_fatal_recorded_by_serve_ends_every_waiting_and_resuming_chat_with_its_cause(
        upstream: SyntheticUpstream, tmp_path: Path) -> None:
    write_fatal(tmp_path, "old_cause", time.time() - 3600)  # an earlier run's: not this outage

    async def go(url: str, gw: RunningGateway) -> dict[str, list[dict[str, Any]]]:
        async with connect(url) as ws:
            await ws.send(chat("a", f"restart {COUNT} {CUT}"))
            await deltas_until(ws, "a", CUT)
            await wait_on(lambda: upstream.down, "the upstream went down at the cut")
            await ws.send(chat("b", "model 5"))
            await wait_on(lambda: gw.health()["waiting"] == 1, "chat b waits in the queue")
            checks = gw.gateway.supervisor_checks
            await wait_on(lambda: gw.gateway.supervisor_checks >= checks + 2, "the gateway read the old record")
            write_fatal(tmp_path, "engine_oom", time.time())
            frames: dict[str, list[dict[str, Any]]] = await until_end(ws, {"a", "b"})
            return frames

    with running_gateway(upstream.base_url, serve_state_dir=str(tmp_path), serve_profile="p") as gw:
        frames = run(go(gw.url, gw))
        found = metrics(gw)
    for chat_id in ("a", "b"):
        end = frames[chat_id][-1]
        assert end["code"] == "interrupted", end
        assert "qwenops serve --profile p gave up" in end["message"] and "FATAL: engine_oom" in end["message"]
    assert not upstream.counters.paths.count("/v1/completions")
    assert found["qwenops_gateway_chat_errors_total{code=interrupted}"] == 2


def test_serve_records_are_read_bounded_and_checked(tmp_path: Path) -> None:
    from qwenops.gateway.config import ServeRecords

    records = ServeRecords(tmp_path, "p")
    assert records.fatal() is None and not records.running()
    for text in ("{", "[]", '{"cause": "x y", "at": 5}', '{"cause": "ok", "at": "5"}', '{"cause": "ok", "at": 1e300}',
                 json.dumps({"cause": "ok", "at": 5, "pad": "x" * 5000})):
        records.fatal_path.write_text(text, encoding="utf-8")
        assert records.fatal() is None, text
    write_fatal(tmp_path, "engine_oom", 1000.0)
    assert records.gave_up_since(999.0) is not None and records.gave_up_since(1001.0) is None
    import psutil

    records.run_path.parent.mkdir()
    me = psutil.Process()
    records.run_path.write_text(json.dumps({"qwenops_pid": os.getpid(), "qwenops_started": me.create_time()}))
    assert records.running() and records.describe() == "qwenops serve --profile p is running"
    records.run_path.write_text(json.dumps({"qwenops_pid": os.getpid(), "qwenops_started": 1.0}))  # pid reused
    assert not records.running()


def test_a_5xx_from_a_server_that_is_up_is_its_status_not_a_restart(upstream: SyntheticUpstream) -> None:
    """A 500 that vLLM answers for the request itself (its /health still 200) fails that chat with
    http_status at once: the gateway does not mark the server down and queue every client behind it."""
    async def go(url: str) -> dict[str, list[dict[str, Any]]]:
        async with connect(url) as ws:
            await ws.send(chat("bad", "http500"))
            ended = await until_end(ws, {"bad"})
            await ws.send(chat("next", "tokens 2"))
            return {**ended, **(await until_end(ws, {"next"}))}

    with running_gateway(upstream.base_url, queue_deadline_s=60) as gw:
        frames = run(go(gw.url))
        assert gw.health()["server"] == "ready" and gw.health()["waiting"] == 0
    assert frames["bad"][-1]["type"] == "error" and frames["bad"][-1]["code"] == "http_status", frames["bad"]
    assert frames["next"][-1]["type"] == "done"


# --------------------------------------------------------------------------------------------- /metrics


def test_metrics_count_chats_by_outcome_and_code_cancels_connections_and_latency(upstream: SyntheticUpstream) -> None:
    async def go(url: str, gw: RunningGateway) -> dict[str, float]:
        async with connect(url) as ws:
            await ws.send(chat("ok", "tokens 5"))
            await ws.send(chat("bad", "http400"))
            await until_end(ws, {"ok", "bad"})
            await ws.send(chat("h", "hang"))
            assert (await receive(ws))["type"] == "delta"
            await ws.send(json.dumps({"type": "cancel", "id": "h"}))
            await until_end(ws, {"h"})
            return await asyncio.to_thread(metrics, gw)

    with running_gateway(upstream.base_url) as gw:
        during = run(go(gw.url, gw))
        poll_until(lambda: metrics(gw)["qwenops_gateway_connections"] == 0, "the connection is counted out")
    assert during["qwenops_gateway_connections"] == 1
    assert during["qwenops_gateway_chats_total{outcome=done}"] == 1
    assert during["qwenops_gateway_chats_total{outcome=error}"] == 2
    assert during["qwenops_gateway_chat_errors_total{code=bad_request}"] == 1
    assert during["qwenops_gateway_chat_errors_total{code=cancelled}"] == 1
    assert during["qwenops_gateway_chat_errors_total{code=timeout}"] == 0  # every code starts at 0
    assert during["qwenops_gateway_cancels_total"] == 1
    assert during["qwenops_gateway_relay_latency_seconds_count"] >= 6  # 5 deltas, one of "hang"
    assert during["qwenops_gateway_queue_bytes"] >= 0
    assert during["qwenops_gateway_resumptions_total{outcome=done}"] == 0


def test_metrics_need_the_token_when_one_is_set(upstream: SyntheticUpstream) -> None:
    with running_gateway(upstream.base_url, token=TOKEN) as gw:
        url = f"http://127.0.0.1:{gw.config.port}/metrics"
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong-token-0123456789"}, timeout=10).status_code == 401
        assert metrics(gw, Authorization=f"Bearer {TOKEN}")["qwenops_gateway_connections"] == 0
        assert httpx.get(f"http://127.0.0.1:{gw.config.port}/healthz", timeout=10).status_code == 200


def test_two_gateways_in_one_process_keep_their_own_counters(upstream: SyntheticUpstream) -> None:
    async def one(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(chat("ok", "tokens 1"))
            await until_end(ws, {"ok"})

    with running_gateway(upstream.base_url) as first, running_gateway(upstream.base_url) as second:
        run(one(first.url))
        assert metrics(first)["qwenops_gateway_chats_total{outcome=done}"] == 1
        assert metrics(second)["qwenops_gateway_chats_total{outcome=done}"] == 0


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_a_rebinding_page_cannot_read_healthz_or_metrics(upstream: SyntheticUpstream, path: str) -> None:
    """The Host rule of the WebSocket handshake holds for the HTTP routes that tell how the gateway is
    used: a page served as evil.example that rebinds the name to 127.0.0.1 gets 403."""
    with running_gateway(upstream.base_url) as gw:
        port = gw.config.port
        evil = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": f"evil.example:{port}"}, timeout=10)
        mine = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    assert (evil.status_code, mine.status_code) == (403, 200)
