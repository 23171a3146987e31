"""The gateway against a synthetic upstream on a real socket: the protocol, limits, cancel and disconnect,
errors that never end the connection, security, text mode, slow readers, drain. (Against the real vLLM
CPU server: tests/integration/test_gateway_engine.py; the page in Chromium: test_gateway_page.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from websockets.exceptions import ConnectionClosed

from qwenops.cli import cli
from qwenops.errors import (
    BadInputError,
    HTTPStatusError,
    InBandError,
    StreamInterrupted,
    StreamTimeout,
    UnreachableError,
)
from qwenops.gateway import protocol
from qwenops.gateway.app import error_code
from qwenops.gateway.config import build_config
from tests.gateway_harness import chat, connect, handshake, log_lines, receive, running_gateway, text_of, until_end
from tests.polling import poll_until
from tests.synthetic_upstream import SyntheticUpstream, synthetic_upstream

TOKEN = "test-token-0123456789abcdef"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def wait_for(condition: Any, what: str, timeout_s: float = 120) -> None:
    poll_until(condition, what, timeout_s, interval_s=0.02)


# --------------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize(("text", "message"), [
    ("{bad", "the frame is not JSON"),
    ("[1, 2]", "the frame must be a JSON object, got list"),
    ('{"type": "chat", "id": "a", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
     "the frame is not JSON (NaN is not JSON)"),
    ('{"type": "hello", "id": "a"}', "type: must be one of chat, cancel, ping; got 'hello'"),
    ('{"type": "chat", "messages": []}', "id: must be a non-empty string of at most 128 characters, got None"),
    ('{"type": "chat", "id": 7}', "id: must be a non-empty string"),
    (json.dumps({"type": "chat", "id": "x" * 129}), "id: must be a non-empty string of at most 128"),
    ('{"type": "chat", "id": "a"}', "messages: must be a non-empty array"),
    ('{"type": "chat", "id": "a", "messages": ["hi"]}', "messages[0]: must be an object with a string role"),
    ('{"type": "chat", "id": "a", "messages": [{"role": "user"}], "model": "other"}',
     "model: not a chat parameter here"),
    ('{"type": "chat", "id": "a", "messages": [{"role": "user"}], "stream": false}', "stream: not a chat parameter"),
    ('{"type": "chat", "id": "a", "messages": [{"role": "user"}], "n": 2}', "n: not a chat parameter here"),
])
def test_a_bad_frame_is_named(text: str, message: str) -> None:
    with pytest.raises(protocol.FrameError) as caught:
        protocol.parse_frame(text)
    assert caught.value.message.startswith(message)
    assert caught.value.code == "bad_request"


def test_a_chat_frame_passes_every_other_key_on_as_a_parameter() -> None:
    frame = protocol.parse_frame(chat("c1", "hi", max_tokens=5, temperature=0, ignore_eos=True, n=1))
    assert frame == protocol.Chat("c1", [{"role": "user", "content": "hi"}],
                                  {"max_tokens": 5, "temperature": 0, "ignore_eos": True, "n": 1})
    assert protocol.parse_frame('{"type": "cancel", "id": "c1"}') == protocol.Cancel("c1")
    assert protocol.parse_frame('{"type": "ping"}') == protocol.Ping()


@pytest.mark.parametrize(("params", "message"), [
    ({"chat_template": "{% for i in range(99999999) %}x{% endfor %}"}, "chat_template: not a chat parameter"),
    ({"kv_transfer_params": {"remote_host": "10.0.0.66"}}, "kv_transfer_params: not a chat parameter"),
    ({"priority": -1000000}, "priority: not a chat parameter"),
    ({"request_id": "another-users-request"}, "request_id: not a chat parameter"),
    ({"cache_salt": "x"}, "cache_salt: not a chat parameter"),
    ({"vllm_xargs": {"a": 1}}, "vllm_xargs: not a chat parameter"),
    ({"n": True}, "n: not a chat parameter here"),
    ({"n": 1.0}, "n: not a chat parameter here"),
    ({"ignore_eos": True}, "ignore_eos and min_tokens need max_tokens"),
    ({"min_tokens": 1_000_000_000, "max_tokens": 10}, "min_tokens: must be a whole number from 0 to 10"),
    ({"chat_template_kwargs": {"chat_template": "{{ 7*7 }}"}}, "chat_template_kwargs: only enable_thinking"),
    ({"chat_template_kwargs": {"enable_thinking": "yes"}}, "chat_template_kwargs: only enable_thinking"),
])
def test_parameters_that_are_the_operators_are_refused_by_name(params: dict[str, object], message: str) -> None:
    with pytest.raises(protocol.FrameError) as caught:
        protocol.parse_frame(chat("c1", "hi", **params))
    assert caught.value.message.startswith(message), caught.value.message
    assert caught.value.id == "c1"


def test_sampling_parameters_and_the_thinking_switch_pass() -> None:
    params = {"max_tokens": 50, "min_tokens": 5, "ignore_eos": True, "top_k": 20, "min_p": 0.0, "seed": 7,
              "stop": ["\n\n"], "chat_template_kwargs": {"enable_thinking": False}, "response_format": {"type": "text"}}
    frame = protocol.parse_frame(chat("c1", "hi", **params))
    assert isinstance(frame, protocol.Chat) and frame.params == params


def test_only_text_parts_are_relayed() -> None:
    frame = json.dumps({"type": "chat", "id": "c1", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is here?"},
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}}]}]})
    with pytest.raises(protocol.FrameError) as caught:
        protocol.parse_frame(frame)
    assert caught.value.message == "messages[0].content[1]: only text parts are relayed, got 'image_url'"


def _nested(depth: int, inner: str = "0") -> str:
    """A JSON value DEPTH levels deep: arrays and objects alternating."""
    text = inner
    for level in range(depth):
        text = f"[{text}]" if level % 2 else f'{{"k": {text}}}'
    return text


def _chat_with(**raw: str) -> str:
    """A chat frame whose extra keys hold raw JSON text."""
    extra = "".join(f", {json.dumps(key)}: {value}" for key, value in raw.items())
    return '{"type": "chat", "id": "a", "messages": [{"role": "user", "content": "x"}]' + extra + "}"


@pytest.mark.parametrize("text", [
    _chat_with(logit_bias=_nested(32)),  # the frame, then 32 levels: 33 in all
    _chat_with(logit_bias=_nested(500)),  # the issue's: the NaN check's recursion overflowed
    _chat_with(logit_bias=_nested(100_000)),  # beyond the decoder's own recursion
    '{"type": "chat", "id": "a", "messages": [{"role": "user", "content": ' + _nested(40, '"x"') + "}]}",
    '{"type": "chat", "id": ' + _nested(40) + "}",
    "[" * 50 + "]" * 50,
    '{"type": ' + "[" * 5000 + "]" * 5000 + "}",
])
def test_nesting_beyond_the_limit_is_a_bad_request(text: str) -> None:
    from qwenops.untrusted import MAX_JSON_DEPTH

    with pytest.raises(protocol.FrameError) as caught:
        protocol.parse_frame(text)
    assert caught.value.code == "bad_request"
    assert caught.value.message == f"the frame is nested more than {MAX_JSON_DEPTH} levels deep"
    assert isinstance(protocol.parse_frame(_chat_with(logit_bias=_nested(31))), protocol.Chat)  # 32 levels: fine


@pytest.mark.parametrize(("raw", "message"), [
    ("1e999", "temperature: not a finite number (beyond ±1.8e308)"),
    ("-1E400", "temperature: not a finite number (beyond ±1.8e308)"),
    ("1" + "0" * 400, "temperature: an integer of more than 100 digits"),
    ("1" * 101, "temperature: an integer of more than 100 digits"),
    ("-" + "1" * 101, "temperature: an integer of more than 100 digits"),
    ('{"a": [1e999]}', "temperature.a[0]: not a finite number (beyond ±1.8e308)"),
])
def test_numbers_must_be_finite_and_short(raw: str, message: str) -> None:
    with pytest.raises(protocol.FrameError) as caught:
        protocol.parse_frame(_chat_with(temperature=raw))
    assert caught.value.message == message
    assert caught.value.code == "bad_request" and caught.value.id == "a"
    frame = protocol.parse_frame(_chat_with(temperature="1e308", seed="9" * 100, top_p="0." + "1" * 300))
    assert isinstance(frame, protocol.Chat)
    assert frame.params == {"temperature": 1e308, "seed": int("9" * 100), "top_p": float("0." + "1" * 300)}


def test_an_integer_past_pythons_own_limit_is_a_bad_request() -> None:
    with pytest.raises(protocol.FrameError) as caught:  # json.loads itself refuses past 4,300 digits
        protocol.parse_frame(_chat_with(seed="7" * 100_000))
    assert caught.value.message == "an integer of more than 100 digits" and caught.value.code == "bad_request"


@pytest.mark.parametrize(("text", "message"), [
    ('{"type": "ping", "type": "chat", "id": "a", "messages": [{"role": "user"}]}', "duplicate key 'type'"),
    ('{"type": "chat", "id": "a", "messages": [{"role": "user", "role": "system"}]}',
     "messages[0]: duplicate key 'role'"),
    (_chat_with(logit_bias='{"1": 1, "1": 2}'), "logit_bias: duplicate key '1'"),
])
def test_duplicate_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(protocol.FrameError) as caught:
        protocol.parse_frame(text)
    assert caught.value.message == message and caught.value.code == "bad_request"


@pytest.mark.parametrize(("text", "message"), [
    ('{"type": "chat", "id": "a", "messages": [{"role": "user", "content": "x\\ud800"}]}',
     "messages[0].content: a lone surrogate (U+D800) is not text"),
    ('{"type": "chat", "id": "a", "messages": [{"role": "\\udfff", "content": "x"}]}',
     "messages[0].role: a lone surrogate (U+DFFF) is not text"),
    ('{"type": "chat", "id": "a\\udc00", "messages": [{"role": "user"}]}', "id: a lone surrogate (U+DC00) is not text"),
    ('{"type": "chat\\ud800", "id": "a"}', "type: a lone surrogate (U+D800) is not text"),
    (_chat_with(stop='["ok", "\\ud83d"]'), "stop[1]: a lone surrogate (U+D83D) is not text"),
    (_chat_with(logit_bias='{"\\ud800": 1}'), "logit_bias: a key holds a lone surrogate (U+D800), which is not text"),
    ('{"type": "chat", "id": "a", "\\ud800": 1, "messages": [{"role": "user"}]}',
     "a key holds a lone surrogate (U+D800), which is not text"),
    ('{"type": "chat", "id": "a", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}]}',
     "messages[0].content[0].text: a lone surrogate (U+D800) is not text"),
])
def test_lone_surrogates_are_refused_wherever_they_are(text: str, message: str) -> None:
    with pytest.raises(protocol.FrameError) as caught:
        protocol.parse_frame(text)
    assert caught.value.message == message and caught.value.code == "bad_request"
    paired = protocol.parse_frame('{"type": "chat", "id": "a", "messages": [{"role": "user", '
                                  '"content": "\\ud83d\\ude00"}]}')
    assert isinstance(paired, protocol.Chat) and paired.messages[0]["content"] == "\N{GRINNING FACE}"


_EVERY_TYPE = ["null", "true", "false", "0", "-1", "1.5", '""', '"x"', "[]", "{}", '[{"role": "user"}]',
               '{"role": "user"}', json.dumps("x" * 1000), _nested(10)]


@pytest.mark.parametrize("value", _EVERY_TYPE)
@pytest.mark.parametrize("where", ["type", "id", "messages", "message", "role", "content", "max_tokens", "temperature"])
def test_any_json_value_in_any_field_is_a_frame_or_a_named_error(where: str, value: str) -> None:
    frame = {"type": '"chat"', "id": '"a"', "messages": '[{"role": "user", "content": "x"}]'}
    if where in ("type", "id", "messages"):
        frame[where] = value
    elif where == "message":
        frame["messages"] = f"[{value}]"
    elif where in ("role", "content"):
        other = '"content": "x"' if where == "role" else '"role": "user"'
        frame["messages"] = f'[{{{json.dumps(where)}: {value}, {other}}}]'
    else:
        frame[where] = value
    text = "{" + ", ".join(f"{json.dumps(key)}: {raw}" for key, raw in frame.items()) + "}"
    try:
        parsed = protocol.parse_frame(text)
    except protocol.FrameError as exc:
        assert exc.code in protocol.CODES and exc.message
        assert exc.id in (None, "a")
    else:
        assert isinstance(parsed, (protocol.Chat, protocol.Cancel, protocol.Ping))


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("raw", ['"5"', "true", "0", "-1", "1.5", "1e3", str(10**10), "[]", "{}"])
def test_max_tokens_must_be_a_count(key: str, raw: str) -> None:
    with pytest.raises(protocol.FrameError) as caught:
        protocol.parse_frame(_chat_with(**{key: raw}))
    assert caught.value.message.startswith(f"{key}: must be a whole number from 1 to ")
    assert caught.value.id == "a"
    for fine in ("1", "5", "null"):
        assert isinstance(protocol.parse_frame(_chat_with(**{key: fine})), protocol.Chat)


def test_every_stream_error_has_its_code() -> None:
    assert error_code(InBandError("x", error={}, text_so_far="", chunks=0)) == "in_band_error"
    assert error_code(StreamInterrupted("x", text_so_far="", chunks=0)) == "interrupted"
    assert error_code(StreamTimeout("x")) == "timeout"
    assert error_code(UnreachableError("x")) == "unreachable"
    assert error_code(BadInputError("x")) == "bad_request"
    assert error_code(HTTPStatusError("x", status_code=400, body="")) == "bad_request"
    assert error_code(HTTPStatusError("x", status_code=503, body="")) == "http_status"
    assert set(protocol.CODES) >= {"in_band_error", "interrupted", "unreachable", "http_status", "timeout",
                                   "bad_request"}


# --------------------------------------------------------------------------------------------- config


def test_binding_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(BadInputError) as caught:
        build_config(upstream="http://127.0.0.1:8000", model="m", host="0.0.0.0")
    assert caught.value.field == "QWENOPS_GATEWAY_TOKEN"
    assert "beyond loopback" in caught.value.message
    assert build_config(upstream="http://127.0.0.1:8000", model="m", host="0.0.0.0", token=TOKEN).host == "0.0.0.0"
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert build_config(upstream="http://x:1", model="m", host=host).token is None


@pytest.mark.parametrize("token", ["short", "has space in it 123456", "x" * 257, "semi;colon-0123456789"])
def test_a_token_that_cannot_travel_as_a_subprotocol_is_refused(token: str) -> None:
    with pytest.raises(BadInputError) as caught:
        build_config(upstream="http://127.0.0.1:8000", model="m", token=token)
    assert caught.value.field == "QWENOPS_GATEWAY_TOKEN"
    assert token not in caught.value.one_line()


def test_cli_check_names_a_bad_flag_and_never_shows_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["gateway", "--max-chats", "0", "--check"])
    assert bad.exit_code == 2
    assert "--max-chats" in bad.output
    small = runner.invoke(cli, ["gateway", "--socket-buffer-bytes", "100", "--check"])
    assert small.exit_code == 2
    assert "--socket-buffer-bytes" in small.output and "4096" in small.output
    monkeypatch.setenv("QWENOPS_GATEWAY_TOKEN", TOKEN)
    monkeypatch.setenv("QWENOPS_API_KEY", "sk-upstream-secret")
    shown = runner.invoke(cli, ["gateway", "--check", "--json", "--host", "0.0.0.0", "--allow-origin", "https://a"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)["data"]
    assert data["host"] == "0.0.0.0"
    assert data["allowed_origins"] == ["https://a"]
    assert data["upstream"] == "http://127.0.0.1:8000"
    assert TOKEN not in shown.output and "sk-upstream-secret" not in shown.output
    refused = runner.invoke(cli, ["gateway", "--check", "--host", "0.0.0.0"], env={"QWENOPS_GATEWAY_TOKEN": ""})
    assert refused.exit_code == 2
    assert "QWENOPS_GATEWAY_TOKEN" in refused.output


_FLAGS = ["--port", "--max-chats", "--max-chats-per-connection", "--max-frame-bytes", "--send-queue-bytes",
          "--socket-buffer-bytes", "--idle-timeout", "--ping-interval", "--drain", "--queue-size", "--queue-deadline"]


_BAD_NUMBERS = ["nan", "NaN", "inf", "-inf", "infinity", "-1", "0", "1e400", "99999999999999999999", "", " ", "1e-9",
                "0x10", "ten"]


@pytest.mark.parametrize(("flag", "value"), [(flag, value) for flag in _FLAGS for value in _BAD_NUMBERS
                                             if not (flag == "--drain" and value in ("0", "1e-9"))  # 0: stop at once
                                             and not (flag == "--queue-size" and value == "0")])  # 0: no queue
def test_every_numeric_flag_refuses_what_is_not_a_sensible_number(flag: str, value: str) -> None:
    done = CliRunner().invoke(cli, ["gateway", flag, value, "--check"])
    assert done.exit_code == 2, (flag, value, done.output)
    assert flag in done.output
    assert "Traceback" not in done.output
    if value.lower() in ("nan", "inf", "-inf", "infinity"):
        assert "less than" not in done.output and "greater than" not in done.output, done.output


def test_a_non_finite_value_is_refused_by_the_config_too() -> None:
    for field in ("idle_timeout_s", "ping_interval_s", "drain_s", "read_timeout_s", "queue_deadline_s"):
        for value in (float("nan"), float("inf")):
            with pytest.raises(BadInputError) as caught:
                build_config(upstream="http://x:1", model="m", **{field: value})
            assert "finite" in caught.value.message


@pytest.mark.parametrize("origin", ["https://x/", "", " ", "https://exa mple.com", "null", "https://X.com", "https://x:443",
                                    "http://x:80", "https://u:p@x.example", "https://x/path", "https://x?q", "https://x#f",
                                    "x.example", "//x.example", "https://", "https://x:99999", "https://x:", "http://[::1",
                                    "http://127.1", "https://-x-.example", "https://x\u00e9.example", "*.example.com"])
def test_an_allowed_origin_must_be_one_a_browser_can_send(origin: str) -> None:
    done = CliRunner().invoke(cli, ["gateway", "--allow-origin", origin, "--check"])
    assert done.exit_code == 2, (origin, done.output)
    assert "--allow-origin" in done.output
    assert "u:p" not in done.output


def test_allowed_origins_a_browser_sends_pass() -> None:
    for origin in ("*", "https://chat.example.com", "http://127.0.0.1:8080", "http://[::1]:81", "http://localhost.:8090",
                   "chrome-extension://abcdef", "https://xn--e1afmkfd.xn--p1ai"):
        assert build_config(upstream="http://x:1", model="m", allowed_origins=(origin,)).allowed_origins == (origin,)


@pytest.mark.parametrize(("flag", "value"), [("--host", ""), ("--host", "garbage!"), ("--host", "exa mple"),
                                             ("--host", "http://0.0.0.0"), ("--host", "127.0.0.1:80"),
                                             ("--allow-host", ""), ("--allow-host", "a b"), ("--allow-host", "x:80"),
                                             ("--allow-host", "http://x"), ("--allow-host", "*"),
                                             ("--allow-host", "caf\u00e9.example"), ("--allow-host", "127.1")])
def test_a_host_must_be_an_address_or_a_name(flag: str, value: str) -> None:
    done = CliRunner().invoke(cli, ["gateway", flag, value, "--check"])
    assert done.exit_code == 2, (flag, value, done.output)
    assert flag in done.output


def test_check_masks_a_password_in_the_upstream_url() -> None:
    runner = CliRunner()
    for args in (["--check"], ["--check", "--json"]):
        done = runner.invoke(cli, ["gateway", "--upstream", "http://user:s3cret@127.0.0.1:8000", *args])
        assert done.exit_code == 0, done.output
        assert "s3cret" not in done.output and "***@127.0.0.1:8000" in done.output
    shown = json.loads(runner.invoke(cli, ["gateway", "--check", "--json", "--allow-host", "Chat.Example"]).output)
    assert shown["data"]["allowed_hosts"] == ["chat.example"]


def test_the_start_line_masks_a_password_in_the_upstream_url() -> None:
    from qwenops.cli.views.gateway import start_line

    config = build_config(upstream="http://user:s3cret@127.0.0.1:8000", model="m")
    line = start_line(config)
    assert "s3cret" not in line and "***@127.0.0.1:8000" in line


# --------------------------------------------------------------------------------------------- chats


def test_deltas_concatenate_to_the_answer_and_end_with_usage(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> dict[str, list[dict[str, Any]]]:
        async with connect(url) as ws:
            await ws.send(chat("a", "tokens 40", max_tokens=40, temperature=0.5, ignore_eos=True))
            return await until_end(ws, {"a"})

    with running_gateway(upstream.base_url) as gw:
        frames = run(go(gw.url))["a"]
    assert text_of(frames) == "".join(f"t{i} " for i in range(40))
    # Streamed, not one block: each of the server's 40 events is a frame of its own, however TCP packs them.
    assert [f["content"] for f in frames if f["type"] == "delta"] == [f"t{i} " for i in range(40)]
    assert frames[-1] == {"type": "done", "id": "a", "finish_reason": "stop",
                          "usage": {"prompt_tokens": 5, "completion_tokens": 40, "total_tokens": 45}}
    sent = upstream.counters.bodies[-1]
    assert sent["max_tokens"] == 40 and sent["temperature"] == 0.5 and sent["ignore_eos"] is True
    assert sent["model"] == "m" and sent["stream"] is True


def test_several_chats_on_one_connection_each_end_once(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> dict[str, list[dict[str, Any]]]:
        async with connect(url) as ws:
            for index in range(6):
                await ws.send(chat(f"c{index}", f"slow {index + 3} 0.01"))
            return await until_end(ws, {f"c{index}" for index in range(6)})

    with running_gateway(upstream.base_url) as gw:
        frames = run(go(gw.url))
    for index in range(6):
        mine = frames[f"c{index}"]
        assert text_of(mine) == "".join(f"t{i} " for i in range(index + 3))
        assert [f["type"] for f in mine].count("done") == 1
        assert mine[-1]["type"] == "done"


def test_upstream_errors_are_frames_and_the_connection_goes_on(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> dict[str, list[dict[str, Any]]]:
        async with connect(url) as ws:
            await ws.send(chat("inband", "inband"))
            await ws.send(chat("cut", "cut"))
            await ws.send(chat("refused", "http400", temperature=-1))
            frames = await until_end(ws, {"inband", "cut", "refused"})
            await ws.send(chat("after", "tokens 2"))
            frames.update(await until_end(ws, {"after"}))
            return frames

    with running_gateway(upstream.base_url) as gw:
        frames = run(go(gw.url))
    assert frames["inband"][-1]["code"] == "in_band_error"
    assert "EngineCore encountered an issue" in frames["inband"][-1]["message"]
    assert frames["cut"][-1]["code"] == "interrupted"
    assert frames["refused"][-1]["code"] == "bad_request"
    assert "temperature must be non-negative" in frames["refused"][-1]["message"]
    assert frames["after"][-1]["type"] == "done"


def test_without_a_queue_an_upstream_that_is_down_then_back_gives_unreachable_then_answers() -> None:
    """--queue-size 0: a chat that finds the server down fails at once, as before the queue.
    (With the queue: tests/unit/test_gateway_resume.py.)"""
    from tests.integration.conftest import free_port

    port = free_port()

    async def ask(ws: Any, chat_id: str) -> dict[str, Any]:
        await ws.send(chat(chat_id, "tokens 2"))
        frames: dict[str, Any] = (await until_end(ws, {chat_id}))[chat_id][-1]
        return frames

    async def go(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        async with connect(url) as ws:
            down = await ask(ws, "down")
            with synthetic_upstream(port):
                back = await ask(ws, "back")
            return down, back

    with running_gateway(f"http://127.0.0.1:{port}", queue_size=0) as gw:
        down, back = run(go(gw.url))
    assert down["code"] == "unreachable"
    assert back["type"] == "done"


def test_cancel_and_disconnect_close_the_upstream_request(upstream: SyntheticUpstream) -> None:
    async def cancel(url: str) -> list[dict[str, Any]]:
        async with connect(url) as ws:
            await ws.send(chat("h", "hang"))
            assert (await receive(ws))["type"] == "delta"
            await ws.send(json.dumps({"type": "cancel", "id": "h"}))
            await ws.send(json.dumps({"type": "cancel", "id": "never-started"}))  # nothing to answer
            frames = (await until_end(ws, {"h"}))["h"]
            await ws.send(json.dumps({"type": "ping"}))
            assert await receive(ws) == {"type": "pong"}  # nothing was sent for the unknown id
            return frames

    async def leave(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(chat("h2", "hang"))
            assert (await receive(ws))["type"] == "delta"

    with running_gateway(upstream.base_url) as gw:
        frames = run(cancel(gw.url))
        assert frames[-1] == {"type": "error", "id": "h", "code": "cancelled", "message": "cancelled by the client"}
        wait_for(lambda: upstream.counters.aborted == 1 and upstream.counters.active == 0, "cancel did not abort")
        run(leave(gw.url))
        wait_for(lambda: upstream.counters.aborted == 2 and upstream.counters.active == 0, "leaving did not abort")
        wait_for(lambda: gw.health()["chats"] == 0 and gw.health()["connections"] == 0, "the gateway kept state")


def test_limits_answer_with_error_frames(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> dict[str, Any]:
        async with connect(url) as first, connect(url) as second:
            await first.send(chat("a", "hang"))
            await first.send(chat("b", "hang"))
            assert {(await receive(first))["id"], (await receive(first))["id"]} == {"a", "b"}
            await first.send(chat("a", "tokens 1"))
            duplicate = await receive(first)
            await first.send(chat("c", "tokens 1"))
            per_connection = await receive(first)
            await second.send(chat("d", "hang"))
            assert (await receive(second))["type"] == "delta"
            await second.send(chat("e", "tokens 1"))
            overloaded = await receive(second)
            return {"duplicate": duplicate, "per_connection": per_connection, "overloaded": overloaded}

    with running_gateway(upstream.base_url, max_chats_per_connection=2, max_chats=3) as gw:
        found = run(go(gw.url))
    assert found["duplicate"]["code"] == "duplicate_id" and found["duplicate"]["id"] == "a"
    assert found["per_connection"]["code"] == "too_many_chats"
    assert found["overloaded"]["code"] == "overloaded"


def test_a_frame_past_four_frames_worth_closes_the_connection(upstream: SyntheticUpstream) -> None:
    """Each connection may hold at most 4 x --max-frame-bytes (1 MiB at least) of an unfinished frame: it was
    16 MiB whatever the limit, 20 connections +330 MB (audit 4)."""
    from websockets.exceptions import ConnectionClosed

    async def go(url: str) -> int | None:
        async with connect(url, max_size=None) as ws:
            await ws.send("x" * (1024 * 1024 + 1))
            with pytest.raises(ConnectionClosed):
                await receive(ws)
            code: int | None = ws.close_code
            return code

    with running_gateway(upstream.base_url) as gw:
        assert run(go(gw.url)) == 1009


def test_bad_input_is_answered_and_other_chats_keep_going(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        async with connect(url, max_size=None) as ws:
            await ws.send(chat("long", "slow 20 0.02"))
            answers, early = [], []
            for bad in ("{nope", '{"type": "dance", "id": "x"}', '{"type": "chat"}', b"\x00\x01binary",
                        "x" * (1024 * 1024)):
                await ws.send(bad)
                while (frame := await receive(ws))["id"] == "long":
                    early.append(frame)  # the long chat's deltas, interleaved
                answers.append(frame)
            rest = await until_end(ws, {"long"})
            return answers, {"long": early + rest["long"]}

    with running_gateway(upstream.base_url) as gw:
        answers, frames = run(go(gw.url))
    assert [a["code"] for a in answers] == ["bad_request"] * 5
    assert "not JSON" in answers[0]["message"]
    assert "type: must be one of" in answers[1]["message"] and answers[1]["id"] == "x"
    assert answers[2]["message"].startswith("id:")
    assert "binary frames" in answers[3]["message"]
    assert answers[4]["message"] == f"frame: {1024 * 1024} bytes, more than the 262144 allowed"
    assert text_of(frames["long"]) == "".join(f"t{i} " for i in range(20))
    assert frames["long"][-1]["type"] == "done"


def test_hostile_frames_are_answered_in_one_frame_each_and_other_chats_keep_going(upstream: SyntheticUpstream) -> None:
    """Each frame gets one error frame with a documented code and its id when it had a usable one; none
    ends the connection or the chat streaming beside it, and none writes more than one log line."""
    hostile = {
        "deep500": _chat_with(logit_bias=_nested(500)).replace('"id": "a"', '"id": "deep500"'),
        "deep100k": _chat_with(logit_bias="[" * 100_000 + "]" * 100_000).replace('"id": "a"', '"id": "deep100k"'),
        "surrogate": chat("surrogate", "x\ud800"),
        "surrogate-key": _chat_with(**{"\udc00": "1"}).replace('"id": "a"', '"id": "surrogate-key"'),
        "huge": _chat_with(temperature="1e999").replace('"id": "a"', '"id": "huge"'),
        "digits": _chat_with(seed="7" * 100_000).replace('"id": "a"', '"id": "digits"'),
        "duplicate": '{"type": "chat", "id": "duplicate", "top_k": 1, "messages": [{"role": "user"}], "top_k": 2}',
        "max_tokens": chat("max_tokens", "tokens 3", max_tokens="3"),
        None: "[" * 300 + "]" * 300,
    }
    hostile_extra = ["5", "null", '"text"', "true", "[]"]

    async def go(url: str) -> tuple[dict[str | None, dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        async with connect(url, max_size=None) as ws:
            await ws.send(chat("long", "slow 40 0.02"))
            answers: dict[str | None, dict[str, Any]] = {}
            others: list[dict[str, Any]] = []
            long: list[dict[str, Any]] = []
            for chat_id, text in [*hostile.items(), *((None, extra) for extra in hostile_extra)]:
                await ws.send(text)
                while (frame := await receive(ws))["id"] == "long":
                    long.append(frame)
                # past the decoder's own bounds (~1,000 levels, 4,300 digits) the frame is never read far enough
                # to find its id
                assert frame["id"] == (None if chat_id in ("deep100k", "digits") else chat_id), frame
                if chat_id is None:
                    others.append(frame)
                answers[chat_id] = frame
            await ws.send(chat("after", "tokens 2"))
            rest = await until_end(ws, {"long", "after"})
            return answers, others, long + rest["long"] + rest["after"]

    with running_gateway(upstream.base_url) as gw, log_lines() as log:
        answers, others, frames = run(go(gw.url))
    for frame in [*answers.values(), *others]:
        assert frame["type"] == "error" and frame["code"] == "bad_request", frame
    assert "nested more than 32 levels" in answers["deep500"]["message"]
    assert "nested more than 32 levels" in answers["deep100k"]["message"]
    assert answers["surrogate"]["message"] == "messages[0].content: a lone surrogate (U+D800) is not text"
    assert answers["huge"]["message"] == "temperature: not a finite number (beyond ±1.8e308)"
    assert answers["digits"] == {"type": "error", "id": None, "code": "bad_request",
                                 "message": "an integer of more than 100 digits"}
    assert answers["duplicate"]["message"] == "duplicate key 'top_k'"
    assert [f["message"] for f in others[-5:]] == [f"the frame must be a JSON object, got {kind}"
                                                   for kind in ("int", "NoneType", "str", "bool", "list")]
    assert text_of([f for f in frames if f["id"] == "long"]) == "".join(f"t{i} " for i in range(40))
    assert [f["type"] for f in frames if f["type"] in ("done", "error")] == ["done", "done"]
    assert len(log.lines) <= len(hostile) + len(hostile_extra), log.lines


def test_invalid_utf8_in_a_text_frame_closes_with_1007(upstream: SyntheticUpstream) -> None:
    """RFC 6455 8.1: a text frame that is not UTF-8 fails the connection; the close frame says why."""

    async def go(url: str) -> int | None:
        async with connect(url) as ws:
            await ws.send(b'{"type": "ping", "x": "\xff\xfe"}', text=True)
            with pytest.raises(ConnectionClosed):
                await receive(ws, 30)
            code: int | None = ws.close_code
            return code

    with running_gateway(upstream.base_url) as gw, log_lines() as log:
        assert run(go(gw.url)) == 1007
        wait_for(lambda: gw.health()["connections"] == 0, "the connection was kept")
    assert len(log.lines) <= 1, log.lines


def test_an_upstream_that_sends_a_lone_surrogate_does_not_break_the_connection(upstream: SyntheticUpstream) -> None:
    async def go(url: str, mode: str) -> tuple[list[Any], list[Any]]:
        async with connect(url + mode) as ws:
            if mode:
                await ws.send("surrogate")
                first = [await asyncio.wait_for(ws.recv(), 30) for _ in range(2)]
                await ws.send("tokens 2")
                return first, [await asyncio.wait_for(ws.recv(), 30) for _ in range(2)]
            await ws.send(chat("s", "surrogate"))
            frames = await until_end(ws, {"s"})
            await ws.send(chat("after", "tokens 2"))
            return frames["s"], (await until_end(ws, {"after"}))["after"]

    with running_gateway(upstream.base_url) as gw:
        broken, after = run(go(gw.url, ""))
        assert text_of(broken) == "a\N{REPLACEMENT CHARACTER}bt0 " and broken[-1]["type"] == "done"
        assert text_of(after) == "t0 t1 " and after[-1]["type"] == "done"
        broken_text, after_text = run(go(gw.url, "?mode=text"))
        assert broken_text == ["a\N{REPLACEMENT CHARACTER}b", "t0 "] and after_text == ["t0 ", "t1 "]


def test_max_tokens_stops_an_upstream_that_runs_past_it(upstream: SyntheticUpstream) -> None:
    """The synthetic server ignores max_tokens (a server that is not vLLM, or a bug): the gateway stops
    relaying at the limit, counting each delta as at least one token, and hangs up on the server."""

    async def go(url: str) -> dict[str, list[dict[str, Any]]]:
        async with connect(url) as ws:
            await ws.send(chat("five", "slow 400 0.01", max_tokens=5))
            await ws.send(chat("three", "slow 400 0.01", max_tokens=10, max_completion_tokens=3))
            await ws.send(chat("exact", "tokens 4", max_tokens=4))
            return await until_end(ws, {"five", "three", "exact"})

    with running_gateway(upstream.base_url) as gw:
        frames = run(go(gw.url))
        wait_for(lambda: upstream.counters.aborted == 2 and upstream.counters.active == 0,
                 "the server's runaway answers were not hung up on")
    assert text_of(frames["five"]) == "t0 t1 t2 t3 t4 "
    assert frames["five"][-1] == {"type": "done", "id": "five", "finish_reason": "length", "usage": None}
    assert text_of(frames["three"]) == "t0 t1 t2 "
    assert frames["exact"][-1]["finish_reason"] == "stop" and text_of(frames["exact"]) == "t0 t1 t2 t3 "


def test_an_answer_that_never_ends_is_stopped_at_the_chat_deadline(upstream: SyntheticUpstream) -> None:
    """Without max_tokens no count bounds an answer, and empty chunks keep the read timeout from firing
    (audit 7, A7-6): the chat deadline ends it `timeout`, hangs up on the server and frees its slot."""

    async def go(url: str) -> dict[str, list[dict[str, Any]]]:
        async with connect(url) as ws:
            await ws.send(chat("endless", "empty"))
            frames = await until_end(ws, {"endless"})
            await ws.send(chat("after", "tokens 2"))
            return {**frames, **await until_end(ws, {"after"})}

    with running_gateway(upstream.base_url, chat_deadline_s=0.5, max_chats=1) as gw:
        frames = run(go(gw.url))
        wait_for(lambda: upstream.counters.aborted == 1 and upstream.counters.active == 0,
                 "the endless answer was not hung up on")
    end = frames["endless"][-1]
    assert end["type"] == "error" and end["code"] == "timeout" and "--chat-deadline" in end["message"]
    assert text_of(frames["after"]) == "t0 t1 " and frames["after"][-1]["type"] == "done"


# --------------------------------------------------------------------------------------------- security


def test_a_token_is_required_when_configured(upstream: SyntheticUpstream) -> None:
    from websockets.exceptions import InvalidStatus

    async def refused(url: str, **kwargs: Any) -> int:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(url, **kwargs):
                pass
        return caught.value.response.status_code

    async def accepted(url: str, **kwargs: Any) -> tuple[str | None, dict[str, Any]]:
        async with connect(url, **kwargs) as ws:
            await ws.send(chat("a", "tokens 1"))
            return ws.subprotocol, (await until_end(ws, {"a"}))["a"][-1]

    with running_gateway(upstream.base_url, token=TOKEN) as gw:
        assert run(refused(gw.url)) == 403
        assert run(refused(gw.url, additional_headers={"Authorization": "Bearer wrong-token-0123456789"})) == 403
        assert run(refused(gw.url, subprotocols=["qwenops.v1", "bearer.wrong"])) == 403
        header = run(accepted(gw.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}))
        assert header == (None, header[1]) and header[1]["type"] == "done"
        browser = run(accepted(gw.url, subprotocols=["qwenops.v1", f"bearer.{TOKEN}"]))
        assert browser[0] == "qwenops.v1"  # the token is never echoed back as the chosen subprotocol
        assert browser[1]["type"] == "done"


# Host values a client may send, and whether a loopback gateway without a token takes them.
_HOSTS = [
    ("127.0.0.1:{port}", True), ("127.0.0.1", True), ("127.0.0.2:{port}", True), ("localhost:{port}", True),
    ("LocalHost:{port}", True), ("localhost.:{port}", True), ("chat.localhost:{port}", True),
    ("[::1]:{port}", True), ("[::ffff:127.0.0.1]:{port}", True), ("[0:0:0:0:0:0:0:1]:{port}", True),
    ("evil.example:{port}", False), ("evil.example", False), ("localhost.evil.com:{port}", False),
    ("127.0.0.1.evil.com:{port}", False), ("127.1:{port}", False), ("0x7f.0.0.1:{port}", False),
    ("2130706433:{port}", False), ("0177.0.0.1:{port}", False), ("user@127.0.0.1:{port}", False),
    ("user:pw@localhost:{port}", False), ("::1:{port}", False), ("[127.0.0.1]:{port}", False),
    ("[fe80::1%25lo]:{port}", False), ("[::2]:{port}", False), ("localhost..:{port}", False),
    (".localhost:{port}", False), ("localhost:{port}:{port}", False), ("localhost:", False),
    ("localhost:99999", False), ("localhost:http", False), ("", False), (" ", False),
    ("xn--lcalhost-9aa:{port}", False), ("l\u043ecalhost:{port}", False), ("localhost/x:{port}", False),
    ("192.168.1.1:{port}", False), ("0.0.0.0:{port}", False), ("[::]:{port}", False),
]


@pytest.mark.parametrize(("host", "allowed"), _HOSTS)
def test_host_values_a_loopback_gateway_accepts(host: str, allowed: bool) -> None:
    config = build_config(upstream="http://127.0.0.1:8000", model="m")
    assert config.host_allowed([host.format(port=8090)]) is allowed


def test_the_host_check_takes_listed_names_and_the_bind_address_and_leaves_tokened_gateways_to_the_token() -> None:
    listed = build_config(upstream="http://x:1", model="m", allowed_hosts=("Chat.Example.COM.", "[2001:db8::1]",
                                                                             "10.0.0.9"))
    assert listed.allowed_hosts == ("chat.example.com", "2001:db8::1", "10.0.0.9")
    for host in ("chat.example.com:8090", "CHAT.example.com.", "[2001:db8:0::1]:1", "10.0.0.9:80", "localhost:1"):
        assert listed.host_allowed([host]), host
    for host in ("other.example.com", "example.com", "x.chat.example.com", "10.0.0.1:1"):
        assert not listed.host_allowed([host]), host
    bound = build_config(upstream="http://x:1", model="m", host="10.1.2.3", token=TOKEN, allowed_hosts=("a.example",))
    assert bound.host_allowed(["10.1.2.3:8090"]) and bound.host_allowed(["a.example"])
    assert not bound.host_allowed(["evil.example"])
    wildcard = build_config(upstream="http://x:1", model="m", host="0.0.0.0", token=TOKEN, allowed_hosts=("a.example",))
    assert not wildcard.host_allowed(["0.0.0.0:8090"]) and not wildcard.host_allowed(["evil.example"])
    # A token and no --allow-host: the deployments (0.0.0.0, reached by a Service's or a host's name) work as
    # before; a rebinding page cannot present the token. One well-formed Host is still required.
    tokened = build_config(upstream="http://x:1", model="m", host="0.0.0.0", token=TOKEN)
    assert tokened.host_allowed(["gateway.default.svc:8090"]) and tokened.host_allowed(["203.0.113.7:8090"])
    for bad in ([], ["a", "b"], ["user@a"], ["a b"], [""]):
        assert not tokened.host_allowed(bad) and not listed.host_allowed(bad), bad


def test_dns_rebinding_is_refused_at_the_handshake(upstream: SyntheticUpstream) -> None:
    """The issue's attack: a page on evil.example that resolves to 127.0.0.1 sends its own name as Host and
    Origin alike. Refused (403), as are the Host values no browser sends; each refusal is one log line."""
    with running_gateway(upstream.base_url) as gw, log_lines() as log:
        port = gw.config.port
        evil = [("Host", f"evil.example:{port}"), ("Origin", f"http://evil.example:{port}")]
        assert handshake(port, evil) == 403
        statuses = {host: handshake(port, [("Host", host.format(port=port))]) for host, _ in _HOSTS}
        assert handshake(port, []) == 403  # no Host at all
        assert handshake(port, [("Host", f"127.0.0.1:{port}"), ("Host", f"evil.example:{port}")]) == 403
        assert handshake(port, [("Host", f"127.0.0.1:{port}"), ("Host", f"127.0.0.1:{port}")]) == 403
        assert handshake(port, [("Host", "l\u043ecalhost".encode() + f":{port}".encode())]) != 101  # raw UTF-8
        own = [("Host", f"127.0.0.1:{port}"), ("Origin", f"http://127.0.0.1:{port}")]
        assert handshake(port, own) == 101
        for origin in ("null", "file://", f"http://evil.example:{port}", f"http://127.0.0.1:{port + 1}", "http://[::1",
                       f"http://localhost:{port}"):
            assert handshake(port, [("Host", f"127.0.0.1:{port}"), ("Origin", origin)]) == 403, origin
        refusals = len(log.lines)
        wait_for(lambda: gw.health()["connections"] == 0, "a refused handshake left a connection")
    for host, allowed in _HOSTS:
        assert (statuses[host] == 101) is allowed, (host, statuses[host])
    refused = sum(1 for _, allowed in _HOSTS if not allowed) + 1 + 3 + 1 + 6
    assert refusals <= refused, log.lines


def test_a_forwarded_for_header_never_names_the_client(upstream: SyntheticUpstream) -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: any local process could pin its refusals on another
    address (audit 8). The gateway logs the peer it sees."""
    with running_gateway(upstream.base_url) as gw, log_lines() as log:
        port = gw.config.port
        assert handshake(port, [("Host", f"evil.example:{port}"), ("X-Forwarded-For", "203.0.113.77")]) == 403
        wait_for(lambda: any("evil.example" in line for line in log.lines), "the refusal was not logged")
    [line] = [line for line in log.lines if "evil.example" in line]
    assert "127.0.0.1" in line and "203.0.113.77" not in line


def test_the_page_refuses_framing_and_a_foreign_host(upstream: SyntheticUpstream) -> None:
    with running_gateway(upstream.base_url) as gw:
        base = f"http://127.0.0.1:{gw.config.port}"
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        policy = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "connect-src 'self';" in policy and "ws:" not in policy
        assert (page.headers["x-frame-options"], page.headers["x-content-type-options"]) == ("DENY", "nosniff")
        rebound = httpx.get(base + "/", headers={"Host": f"evil.example:{gw.config.port}"}, timeout=10)
        assert rebound.status_code == 403 and "<html" not in rebound.text


def test_browser_origins_are_checked(upstream: SyntheticUpstream) -> None:
    from websockets.exceptions import InvalidStatus

    async def status(url: str, origin: str) -> int:
        try:
            async with connect(url, origin=origin):
                return 101
        except InvalidStatus as exc:
            return int(exc.response.status_code)

    with running_gateway(upstream.base_url, allowed_origins=("https://chat.example.com",)) as gw:
        own = f"http://127.0.0.1:{gw.config.port}"
        assert run(status(gw.url, own)) == 101
        assert run(status(gw.url, "https://chat.example.com")) == 101
        assert run(status(gw.url, "https://evil.example.com")) == 403
        # only scheme://host[:port] is a page's origin (audit 10): the host alone no longer passes
        for odd in (f"file://127.0.0.1:{gw.config.port}", f"{own}/x", f"{own}?q", f"ws://127.0.0.1:{gw.config.port}"):
            assert run(status(gw.url, odd)) == 403, odd


# --------------------------------------------------------------------------------------------- modes and load


def test_text_mode_errors_carry_no_terminal_controls(upstream: SyntheticUpstream) -> None:
    """Text mode is read by terminal clients (websocat) as it comes: the upstream's own words lose their escapes."""
    async def go(url: str) -> str:
        async with connect(url + "?mode=text") as ws:
            await ws.send("http400esc")
            return str(await asyncio.wait_for(ws.recv(), 60))

    with running_gateway(upstream.base_url) as gw:
        line = run(go(gw.url))
    assert line.startswith("[error bad_request] HTTP 400: bad RED"), line
    assert not any(ord(char) < 32 or 0x7F <= ord(char) < 0xA0 for char in line)


def test_text_mode_answers_carry_no_terminal_controls(upstream: SyntheticUpstream) -> None:
    """Audit 7: the model's own words reached a terminal client raw in text mode: an OSC 52 clipboard write, a
    screen clear, a window title (its ESC in one delta, the rest in the next), U+202E. They lose every control
    sequence as error lines do; the text around them, and newlines, stay."""
    async def go(url: str) -> str:
        async with connect(url + "?mode=text") as ws:
            await ws.send("escapes")
            got = ""
            while "t0 " not in got:
                got += str(await asyncio.wait_for(ws.recv(), 30))
            return got

    with running_gateway(upstream.base_url) as gw:
        text = run(go(gw.url))
    assert not any((ord(char) < 32 and char != "\n") or 0x7F <= ord(char) < 0xA0 or char == "\u202e" for char in text)
    assert text.startswith("ab") and "d\n" in text and text.endswith("t0 ")


def test_text_mode_answers_prompts_in_order(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> list[str]:
        async with connect(url + "?mode=text") as ws:
            await ws.send("tokens 3")
            await ws.send("inband")
            got: list[str] = []
            while not any(text.startswith("[error") for text in got):
                got.append(await asyncio.wait_for(ws.recv(), 30))
            return got

    with running_gateway(upstream.base_url) as gw:
        got = run(go(gw.url))
    assert got[:4] == ["t0 ", "t1 ", "t2 ", "t0 "]
    assert got[4].startswith("[error in_band_error] ")


def test_text_mode_answers_every_refusal_in_text(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> list[str]:
        async with connect(url + "?mode=text", max_size=None) as ws:
            got = []
            for message in (b"\x00binary", "x" * (300 * 1024), "   ", "tokens 1"):
                await ws.send(message)
                got.append(await asyncio.wait_for(ws.recv(), 30))
            return got

    with running_gateway(upstream.base_url) as gw:
        got = run(go(gw.url))
    assert got[0] == "[error bad_request] binary frames are not accepted: send the prompt as a text frame"
    assert got[1] == f"[error bad_request] frame: {300 * 1024} bytes, more than the 262144 allowed"
    assert got[2] == "[error bad_request] the prompt is empty"
    assert got[3] == "t0 "


def test_a_client_that_stops_reading_is_cut_off_with_bounded_memory(upstream: SyntheticUpstream) -> None:
    limit = 64 * 1024

    async def go(gw: Any) -> list[dict[str, Any]]:
        async with connect(gw.url, max_queue=1, max_size=None) as ws:
            await ws.send(chat("big", "big 4000 8192"))  # 32 MB, far past every buffer on the way
            wait_for(lambda: gw.health()["chats_failed"] == 1, "the slow reader's chat was not cancelled", 60)
            assert gw.health()["queued_bytes"] <= limit + 1024
            assert upstream.counters.aborted == 1
            return (await until_end(ws, {"big"}))["big"]

    with running_gateway(upstream.base_url, send_queue_bytes=limit) as gw:
        frames = run(go(gw))
    assert frames[-1]["code"] == "slow_reader"
    assert sum(len(f["content"]) for f in frames if f["type"] == "delta") < 4000 * 8192


def test_socket_buffer_bytes_reaches_every_accepted_connection() -> None:
    """--socket-buffer-bytes is set on the listening socket; the connections it accepts must carry it
    (Linux copies it, doubled for its bookkeeping), or a stalled reader could fill the autotuned
    buffers, about a megabyte on loopback, before the send queue."""
    from qwenops.gateway.run import listening_socket, uvicorn_config
    from tests.integration.conftest import free_port

    def accepted_sndbuf(socket_buffer_bytes: int | None) -> int:
        config = build_config(upstream="http://127.0.0.1:9", model="m", port=free_port(),
                              socket_buffer_bytes=socket_buffer_bytes)
        with listening_socket(uvicorn_config(None, config), config) as listener:
            listener.listen()  # uvicorn's server does this when it starts
            with socket.create_connection(("127.0.0.1", config.port)), listener.accept()[0] as accepted:
                return accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    assert accepted_sndbuf(16384) == 2 * 16384
    assert accepted_sndbuf(None) != 2 * 16384  # the kernel's own default


def test_a_ping_is_answered_while_another_connection_streams(upstream: SyntheticUpstream) -> None:
    async def go(url: str) -> list[float]:
        async with connect(url) as streaming, connect(url) as pinging:
            await streaming.send(chat("s", "tokens 20000"))
            assert (await receive(streaming))["type"] == "delta"
            waits = []
            for _ in range(5):
                pong = await pinging.ping()
                started = time.perf_counter()
                await asyncio.wait_for(pong, 5)
                waits.append(time.perf_counter() - started)
            frames = await until_end(streaming, {"s"})
            assert frames["s"][-1]["type"] == "done"
            return waits

    with running_gateway(upstream.base_url) as gw:
        waits = run(go(gw.url))
    assert len(waits) == 5  # every ping answered; its latency is a benchmark's business, not a test's


def test_drain_lets_chats_finish_then_cancels_and_closes_1001(upstream: SyntheticUpstream) -> None:
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    async def refused(url: str) -> int:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(url):
                pass
        return caught.value.response.status_code

    async def go(gw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int | None]:
        async with connect(gw.url) as ws:
            await ws.send(chat("short", "slow 5 0.05"))
            await ws.send(chat("endless", "hang"))
            await receive(ws)
            drain = asyncio.wrap_future(gw.call(gw.gateway.drain()))
            frames: list[dict[str, Any]] = []
            try:
                while True:
                    frames.append(await receive(ws, 30))
            except ConnectionClosed:
                pass
            await drain
            assert await refused(gw.url) == 503
            short = [f for f in frames if f.get("id") == "short"]
            endless = [f for f in frames if f.get("id") == "endless"]
            return short, endless, ws.close_code

    with running_gateway(upstream.base_url, drain_s=1.0) as gw:
        short, endless, code = run(go(gw))
    assert short[-1]["type"] == "done"
    assert endless[-1]["code"] == "shutting_down"
    assert code == 1001


def test_the_protocol_is_documented() -> None:
    from tests.conftest import REPO

    doc = (REPO / "docs" / "gateway.md").read_text(encoding="utf-8")
    for code in protocol.CODES:
        assert f"| `{code}` |" in doc, f"docs/gateway.md does not document the error code {code}"
    for frame in ('{"type": "chat", "id": "c1"', '{"type": "cancel", "id": "c1"}', '{"type": "ping"}',
                  '{"type": "delta", "id": "c1", "content": "..."}', '{"type": "done", "id": "c1"',
                  '{"type": "error", "id": "c1", "code": "...", "message": "..."}'):
        assert frame in doc
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "/ws/chat" in readme and "(docs/gateway.md" in readme


def test_an_idle_connection_is_closed_but_one_with_a_running_chat_is_not(upstream: SyntheticUpstream) -> None:
    from websockets.exceptions import ConnectionClosed

    async def go(url: str) -> tuple[list[dict[str, Any]], int | None, str]:
        async with connect(url) as busy, connect(url) as idle:
            await busy.send(chat("slow", "slow 6 0.1"))  # 0.6 s of answer, idle timeout 0.3 s
            frames = (await until_end(busy, {"slow"}))["slow"]
            with pytest.raises(ConnectionClosed):
                await idle.recv()
            assert idle.close_reason is not None
            return frames, idle.close_code, idle.close_reason

    with running_gateway(upstream.base_url, idle_timeout_s=0.3) as gw:
        frames, code, reason = run(go(gw.url))
    assert frames[-1]["type"] == "done"
    assert (code, reason) == (1000, "idle timeout")


def test_a_client_that_floods_frames_without_reading_is_let_go(upstream: SyntheticUpstream) -> None:
    """Each bad frame is answered; a client that never reads the answers is closed (1008) once they fill
    its send queue, and let go even though it will not take the close frame either."""

    async def go(gw: Any) -> int:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no megabytes of kernel buffer to hide in
        sock.connect(("127.0.0.1", gw.config.port))
        sock.setblocking(False)
        sent = 0
        async with connect(gw.url, max_queue=1, sock=sock, close_timeout=1) as ws:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while sent < 200_000:  # the gateway stops reading us long before this
                    await asyncio.wait_for(ws.send('{"type": "' + "n" * 200 + '"}'), 5)
                    sent += 1
            wait_for(lambda: gw.health()["connections"] == 0, "the flooding client was not let go")
        return sent

    with running_gateway(upstream.base_url, send_queue_bytes=4096) as gw:
        sent = run(go(gw))
        assert gw.health()["queued_bytes"] == 0
    assert sent < 200_000


def test_a_client_that_floods_pings_without_reading_the_pongs_is_cut(upstream: SyntheticUpstream) -> None:
    """The WebSocket protocol answers each ping itself, straight to the socket: 8 million unread pongs were
    +670 MB in the gateway (audit 4). Past the send queue's bytes unsent, the connection is cut."""
    ping = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125  # masked with zeros: the payload as is

    with running_gateway(upstream.base_url, send_queue_bytes=4096) as gw:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no megabytes of kernel buffer to hide in
        sock.connect(("127.0.0.1", gw.config.port))
        sock.sendall(f"GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1:{gw.config.port}\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        sock.settimeout(60)
        sent = 0
        with contextlib.suppress(OSError):  # BrokenPipe or ConnectionReset: the gateway cut us
            while sent < 200_000:  # ~26 MB of pings: the gateway cuts us long before this
                sock.sendall(ping * 1000)
                sent += 1000
        sock.close()
        assert sent < 200_000
        wait_for(lambda: gw.health()["connections"] == 0, "the flooding client was not let go")


# --------------------------------------------------------------------------------------------- slow clients


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the gateway closes SOCK (waits for it, up to a minute: the evidence is the close itself)."""
    sock.settimeout(60)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_a_client_that_never_finishes_its_headers_is_closed_and_a_chat_outlives_the_deadline(
        upstream: SyntheticUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slowloris: before a request's headers are in, no token is checked, so the headers get a deadline; a
    connection that asked for a WebSocket, or is between requests, is not cut by it."""
    from qwenops import untrusted

    monkeypatch.setattr(untrusted, "GATEWAY_HEADER_DEADLINE_S", 0.5)
    with running_gateway(upstream.base_url, token=TOKEN) as gw:
        port = gw.config.port
        with socket.create_connection(("127.0.0.1", port)) as never:
            never.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
            assert closed_by_server(never)
        with socket.create_connection(("127.0.0.1", port)) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert kept.recv(4096).startswith(b"HTTP/1.1 200")
            kept.sendall(b"GET /healthz HTTP/1.1\r\n")  # a second request, never finished
            assert closed_by_server(kept)

        async def chat_after_the_deadline(url: str) -> str:
            async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                await asyncio.sleep(1.5)  # three deadlines: the WebSocket is not an unfinished request
                await ws.send(chat("c1", "tokens 3"))
                return text_of((await until_end(ws, {"c1"}))["c1"])

        assert run(chat_after_the_deadline(gw.url))


def test_a_request_head_past_its_byte_bound_is_cut_before_it_is_parsed(upstream: SyntheticUpstream,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 10, F2: one header that never ended (no token is checked before the headers) cost the gateway's loop
    seconds per 40 MiB (httptools joins a value by `+=`); the deadline bounded its time, not its bytes. Past
    GATEWAY_MAX_HEADER_BYTES the connection is cut; a head under it is served, and the bound is per request on a
    kept-alive connection, not per connection."""
    from qwenops import untrusted

    monkeypatch.setattr(untrusted, "GATEWAY_MAX_HEADER_BYTES", 16 * 1024)
    with running_gateway(upstream.base_url, token=TOKEN) as gw:
        address = ("127.0.0.1", gw.config.port)
        with socket.create_connection(address) as endless:
            endless.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
            with contextlib.suppress(OSError):  # the gateway may cut it while this side still writes
                for _ in range(64):
                    endless.sendall(b"a" * 1024)
            assert closed_by_server(endless)
        with socket.create_connection(address) as kept:
            for _ in range(3):  # 3 x 10 KiB heads on one connection: each under the bound
                kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"a" * 10_000 + b"\r\n\r\n")
                answer = b""
                while b"\r\n\r\n" not in answer:
                    answer += kept.recv(4096)
                assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
                length = int(answer.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                body = answer.split(b"\r\n\r\n", 1)[1]
                while len(body) < length:
                    body += kept.recv(4096)
        assert gw.health()


def test_a_request_head_pipelined_behind_an_unread_response_is_bounded_too(upstream: SyntheticUpstream,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 11: the byte bound counted only between requests, but uvicorn parses on while a response waits for a
    client that does not read: pages pipelined and never read, then one endless header, went in uncounted (48 MiB:
    2.4 s of the loop). Every byte after the last request's head now counts toward the next head, whatever the
    state of the responses before it. (Reaching the state audit 11 reached, a response held, takes a search for the
    number of pages on each machine's buffers; this test pipelines and checks the cut.)"""
    from qwenops import untrusted

    monkeypatch.setattr(untrusted, "GATEWAY_MAX_HEADER_BYTES", 16 * 1024)
    with running_gateway(upstream.base_url, token=TOKEN) as gw:
        with socket.create_connection(("127.0.0.1", gw.config.port)) as pipelining:
            pipelining.settimeout(60)
            with contextlib.suppress(OSError):  # the gateway may cut it while this side still writes
                pipelining.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 600)
                pipelining.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
                for _ in range(256):
                    pipelining.sendall(b"a" * 1024)
            assert closed_by_server(pipelining)
        assert gw.health()


def test_connections_past_the_cap_are_closed_at_once(upstream: SyntheticUpstream,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenops import untrusted

    monkeypatch.setattr(untrusted, "GATEWAY_MAX_CONNECTIONS", 2)
    with running_gateway(upstream.base_url) as gw:
        address = ("127.0.0.1", gw.config.port)
        with socket.create_connection(address) as first, socket.create_connection(address) as second:
            for sock in (first, second):
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            with socket.create_connection(address) as third:
                assert closed_by_server(third)

        def answered() -> bool | None:  # once the gateway has seen the two go, a connection is taken again
            with contextlib.suppress(httpx.HTTPError):
                return bool(gw.health())
            return None

        poll_until(answered, "a connection under the cap is served", interval_s=0.05)
