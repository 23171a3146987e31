"""`qwenops troubleshoot --base-url/--probe` against servers that want a key, proxies that answer
instead of vLLM, and hostile answers, all on real sockets on 127.0.0.1 (tests/sse_server.py).

Issue 21's live case: a server started with --api-key, QWENOPS_API_KEY and QWENOPS_BASE_URL set; the
probes must send the key, and a 401/403 is an `auth` finding whose fix says where the key goes, never
`stream_interrupted`. No finding blames --disable-log-stats unless /metrics answered without vllm: series.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops import untrusted
from qwenops.cli import cli
from tests.sse_server import Answer, Conn, Seen
from tests.unit.test_status_hostile import MODELS, RECORDED, Site, gzip_bomb, healthy_routes, metrics, reply, trickle

LOGIN = b"<!DOCTYPE html><html><head><title>Sign in - Corp SSO</title></head><body><form>...</form></body></html>"


def chat_stream(conn: Conn, _seen: Seen) -> None:
    """A short, complete OpenAI chat stream, as vLLM sends it."""
    conn.head(200, "text/event-stream; charset=utf-8", chunked=True)

    def event(choices: list[object], **more: object) -> None:
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "Qwen3-14B",
                "choices": choices, **more}
        conn.chunk(f"data: {json.dumps(body)}\n\n".encode())

    event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for word in ("The", " sea", " is", " wide", "."):
        event([{"index": 0, "delta": {"content": word}, "finish_reason": None}])
    event([{"index": 0, "delta": {}, "finish_reason": "length"}])
    event([], usage={"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11})
    conn.chunk(b"data: [DONE]\n\n")
    conn.end_chunks()


def vllm_routes() -> dict[str, Answer]:
    return {**healthy_routes(), "/v1/chat/completions": chat_stream}


def with_api_key(key: str, routes: dict[str, Answer], *, status: int = 401) -> dict[str, Answer]:
    """vLLM started with --api-key KEY: /v1/* wants `Authorization: Bearer KEY`; /health and /metrics are open."""
    def guarded(answer: Answer) -> Answer:
        def check(conn: Conn, seen: Seen) -> None:
            if seen.headers.get("authorization") == f"Bearer {key}":
                answer(conn, seen)
            else:
                reply(status, b'{"error":"Unauthorized"}')(conn, seen)

        return check

    return {path: guarded(answer) if path.startswith("/v1/") else answer for path, answer in routes.items()}


def troubleshoot(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(cli, ["troubleshoot", "--no-host", *args, "--json"], env=env,
                                catch_exceptions=False)
    assert result.exit_code != 4, (result.stdout, result.stderr)
    return result.exit_code, json.loads(result.stdout), result.stderr


def findings(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    data = doc["data"]
    assert isinstance(data, dict)
    return {f["category"]: f for f in data["findings"]}


def text_of(finding: dict[str, object]) -> str:
    return json.dumps(finding)


# ------------------------------------------------------------------------------------------ the key


def test_the_probes_send_the_configured_key_with_every_request(site: Callable[[dict[str, Answer]], Site]) -> None:
    """Issue 21's server, with the right key configured: every request carries it, and nothing is refused."""
    server = site(with_api_key("sk-live", vllm_routes()))
    code, doc, _ = troubleshoot("--probe", env={"QWENOPS_API_KEY": "sk-live", "QWENOPS_BASE_URL": server.url})
    found = findings(doc)
    assert "auth" not in found and "stream_interrupted" not in found, found
    assert code == 0, found
    posts = [s for s in server.seen if s.method == "POST"]
    assert len(posts) >= 3  # the long answer, the ordinary one, the ramp
    assert all(s.headers.get("authorization") == "Bearer sk-live" for s in server.seen)


def test_a_401_on_the_probe_is_an_auth_finding_not_a_cut_connection(
        site: Callable[[dict[str, Answer]], Site]) -> None:
    """Issue 21, reproduced: the server wants a key that is not configured."""
    server = site(with_api_key("sk-live", vllm_routes()))
    code, doc, _ = troubleshoot("--probe", env={"QWENOPS_BASE_URL": server.url})
    found = findings(doc)
    assert code == 1
    assert "stream_interrupted" not in found
    auth = found["auth"]
    assert auth["severity"] == "error"
    assert "QWENOPS_API_KEY" in str(auth["fix"]) and "--api-key" in str(auth["fix"])
    assert "QWENOPS_API_KEY is not set" in text_of(auth)
    assert "disable-log-stats" not in json.dumps(doc)
    # the live read's 401 and the probe's are one finding with both pieces of evidence
    assert [f["category"] for f in doc["data"]["findings"]].count("auth") == 1  # type: ignore[index]
    assert {e["source"] for e in auth["evidence"]} >= {"probe", "qwenops"}  # type: ignore[attr-defined]


def test_a_wrong_key_says_it_was_refused(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site(with_api_key("sk-live", vllm_routes()))
    code, doc, _ = troubleshoot("--probe", env={"QWENOPS_API_KEY": "sk-old", "QWENOPS_BASE_URL": server.url})
    auth = findings(doc)["auth"]
    assert code == 1 and "refused the key qwenops sent" in str(auth["fix"])
    assert "sk-old" not in json.dumps(doc)


def test_a_403_says_what_403_means(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site(with_api_key("sk-live", vllm_routes(), status=403))
    code, doc, _ = troubleshoot("--probe", "--base-url", server.url)
    found = findings(doc)
    assert code == 1 and "stream_interrupted" not in found
    fix = str(found["auth"]["fix"])
    assert "403 Forbidden" in fix and "QWENOPS_API_KEY" in fix


def test_without_probes_a_401_on_models_is_an_auth_finding(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site(with_api_key("sk-live", vllm_routes()))
    code, doc, _ = troubleshoot("--base-url", server.url)
    found = findings(doc)
    assert code == 1 and found["auth"]["severity"] == "error"
    assert "metrics_unavailable" not in found  # /metrics was open and vLLM's: nothing to blame on a flag


def test_the_key_is_not_sent_to_another_url(site: Callable[[dict[str, Answer]], Site]) -> None:
    configured = site(vllm_routes())
    other = site(with_api_key("sk-live", vllm_routes()))
    code, doc, _ = troubleshoot("--base-url", other.url,
                                env={"QWENOPS_API_KEY": "sk-live", "QWENOPS_BASE_URL": configured.url})
    assert code == 1 and all("authorization" not in s.headers for s in other.seen)
    assert "not for" in text_of(findings(doc)["auth"])  # it says why no key went


# ------------------------------------------------------------------ something else answers instead


@pytest.mark.parametrize("answer", [
    reply(302, b"", "text/html", headers=(("location", "https://sso.example.com/login?next=/health"),)),
    reply(200, LOGIN, "text/html"),
], ids=["redirect-to-login", "login-page"])
def test_a_login_proxy_is_named_not_no_error(site: Callable[[dict[str, Answer]], Site], answer: Answer) -> None:
    server = site({"/health": answer, "/v1/models": answer, "/metrics": answer, "/v1/chat/completions": answer})
    code, doc, _ = troubleshoot("--base-url", server.url)
    found = findings(doc)
    assert code == 1
    assert found["proxy_answered"]["severity"] == "error"
    assert "disable-log-stats" not in json.dumps(doc)
    assert "engine_dead" not in found


def test_a_probe_answered_by_a_login_page_is_not_a_cut(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({**vllm_routes(), "/v1/chat/completions": reply(200, LOGIN, "text/html")})
    code, doc, _ = troubleshoot("--probe", "--base-url", server.url)
    found = findings(doc)
    assert code == 1 and "proxy_answered" in found and "stream_interrupted" not in found


def test_an_http_error_on_the_probe_is_not_a_cut(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({**vllm_routes(), "/v1/chat/completions": reply(400, b'{"error":{"message":"bad request"}}')})
    code, doc, _ = troubleshoot("--probe", "--base-url", server.url)
    found = findings(doc)
    assert code == 1 and "stream_interrupted" not in found
    assert "HTTP 400" in text_of(found["bad_answer"])


def test_disable_log_stats_is_named_only_for_a_page_without_vllm_series(
        site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({**vllm_routes(), "/metrics": metrics("# TYPE python_gc_objects_collected_total counter\n"
                                                        "python_gc_objects_collected_total 5\n")})
    code, doc, _ = troubleshoot("--base-url", server.url)
    found = findings(doc)
    assert code == 0 and "--disable-log-stats" in str(found["metrics_unavailable"]["fix"])
    server.routes["/metrics"] = reply(404, b'{"detail":"Not Found"}')
    code, doc, _ = troubleshoot("--base-url", server.url)
    assert "disable-log-stats" not in json.dumps(doc)


# -------------------------------------------------------------------------------- hostile answers


def test_a_gzip_bomb_on_metrics_is_exit_3(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({**vllm_routes(), "/metrics": gzip_bomb(4096)})
    code, doc, _ = troubleshoot("--base-url", server.url)
    assert code == 3 and doc["errors"][0]["code"] == "answer_too_large"  # type: ignore[index]


def test_a_trickled_metrics_page_is_exit_3(site: Callable[[dict[str, Answer]], Site],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(untrusted, "HTTP_TOTAL_DEADLINE_S", 1.0)
    server = site({**vllm_routes(), "/metrics": trickle(0.1, head=True)})
    code, doc, _ = troubleshoot("--base-url", server.url)
    assert code == 3 and doc["errors"][0]["code"] == "timeout"  # type: ignore[index]


@pytest.mark.parametrize("page", [
    '# TYPE vllm:time_to_first_token_seconds histogram\nvllm:time_to_first_token_seconds_bucket{x="1"} 1\n',
    '# TYPE vllm:time_to_first_token_seconds histogram\nvllm:time_to_first_token_seconds_bucket{le="abc"} 1\n',
    "vllm:num_requests_waiting -5\nvllm:kv_cache_usage_perc inf\n",
])
def test_metrics_no_vllm_writes_are_an_error_finding(site: Callable[[dict[str, Answer]], Site], page: str) -> None:
    server = site({**vllm_routes(), "/metrics": metrics(page)})
    code, doc, _ = troubleshoot("--base-url", server.url)
    found = findings(doc)
    assert code == 1 and found["metrics_invalid"]["severity"] == "error"


def test_a_password_in_the_url_is_never_printed(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site(vllm_routes())
    url = server.url.replace("http://", "http://admin:hunter2@")
    code, doc, _ = troubleshoot("--base-url", url)
    assert code == 0 and "hunter2" not in json.dumps(doc)
    result = CliRunner().invoke(cli, ["troubleshoot", "--no-host", "--base-url", url])
    assert result.exit_code == 0 and "hunter2" not in result.stdout + result.stderr and "***@" in result.stdout
    server.routes["/metrics"] = reply(200, LOGIN, "text/html")
    result = CliRunner().invoke(cli, ["troubleshoot", "--no-host", "--base-url", url])
    assert result.exit_code == 1 and "hunter2" not in result.stdout + result.stderr


def test_models_listed_by_the_recorded_server_still_read(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({**vllm_routes(), "/v1/models": reply(200, MODELS),
                   "/metrics": metrics(RECORDED.read_text())})
    code, doc, _ = troubleshoot("--base-url", server.url)
    assert code == 0, doc


# ------------------------------------------------------------------------------------------ tune's load


def test_tunes_load_and_scrapes_carry_the_key_its_servers_were_started_with(
        site: Callable[[dict[str, Answer]], Site], monkeypatch: pytest.MonkeyPatch) -> None:
    """serve starts tune's candidates with VLLM_API_KEY = QWENOPS_API_KEY: the load's streams and the
    /metrics scrapes go to that server with that key, even when QWENOPS_BASE_URL names another server."""
    from qwenops.config.loader import load_profile
    from qwenops.config.settings import load_settings
    from qwenops.troubleshoot.live import scrape_metrics
    from qwenops.tune.launch import started_server
    from qwenops.tune.run import _measurer
    from qwenops.tune.workload import workload_from

    server = site(with_api_key("sk-tune", vllm_routes()))
    monkeypatch.setenv("QWENOPS_API_KEY", "sk-tune")
    monkeypatch.setenv("QWENOPS_BASE_URL", "http://127.0.0.1:9")  # the server status reads, not tune's
    settings, profile = load_settings(), load_profile("cpu-tiny")
    started = started_server(server.url, profile, settings)
    samples = _measurer(time.monotonic() + 60)(started, workload_from(16, 5, None, (16, 5)), 2, 2)
    assert [s.error for s in samples] == [None, None] and all(s.output_tokens == 5 for s in samples)
    scrape_metrics(started)
    paths = {s.path for s in server.seen}
    assert {"/v1/chat/completions", "/metrics"} <= paths
    assert all(s.headers.get("authorization") == "Bearer sk-tune" for s in server.seen)


# ------------------------------------------------------------------------------------------ numbers in fixes

SIZES_PAGE = """\
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0"} 75.0
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="%s",engine="0",kv_cache_size_tokens="1920",num_gpu_blocks="%s"} 1.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="length"} 32.0
vllm:request_success_total{engine="0",finished_reason="stop"} 3.0
# TYPE vllm:request_prompt_tokens histogram
vllm:request_prompt_tokens_bucket{engine="0",le="10.0"} 0.0
vllm:request_prompt_tokens_bucket{engine="0",le="20.0"} 32.0
vllm:request_prompt_tokens_bucket{engine="0",le="+Inf"} 32.0
vllm:request_prompt_tokens_count{engine="0"} 32.0
vllm:request_prompt_tokens_sum{engine="0"} 416.0
# TYPE vllm:request_params_max_tokens histogram
vllm:request_params_max_tokens_bucket{engine="0",le="500.0"} 32.0
vllm:request_params_max_tokens_bucket{engine="0",le="+Inf"} 32.0
vllm:request_params_max_tokens_count{engine="0"} 32.0
vllm:request_params_max_tokens_sum{engine="0"} 12800.0
"""


def test_the_preemption_fix_is_the_caches_blocks_over_a_requests() -> None:
    """32 answers of 13 + 400 tokens on 15 blocks of 128: 4 blocks a request, one block vLLM's, 3 at once."""
    from qwenops.troubleshoot.live import read_sizes
    from qwenops.troubleshoot.rules import LogFacts, preemption_finding, safe_max_num_seqs

    sizes = read_sizes(SIZES_PAGE % ("128", "15"), '{"data": [{"id": "m", "max_model_len": 1024}]}')
    assert (sizes.kv_tokens, sizes.kv_blocks, sizes.block_size, sizes.max_model_len) == (1920, 15, 128, 1024)
    found = preemption_finding(75, sizes, {"max_num_seqs": 32}, LogFacts())
    assert found.change == {"max_num_seqs": 3}
    assert "lower max_num_seqs from 32 to 3 (`--set max_num_seqs=3`)" in found.fix
    assert safe_max_num_seqs(1920, None, 413) == 4  # without blocks: tokens over tokens
    assert safe_max_num_seqs(1920, 128, 5000) == 1  # never 0


@pytest.mark.parametrize(("block", "blocks"), [("abc", "15"), ("128", "-1"), ("128", "None"),
                                               ("128", "9" * 13), ("1e3", "15"), ("٣", "15")])
def test_cache_sizes_no_vllm_writes_give_no_number(block: str, blocks: str) -> None:
    from qwenops.troubleshoot.live import read_sizes
    from qwenops.troubleshoot.rules import LogFacts, preemption_finding

    sizes = read_sizes(SIZES_PAGE % (block, blocks), None)
    assert sizes.kv_blocks is None and sizes.block_size is None
    assert sizes.kv_tokens == 1920  # kv_cache_size_tokens, without the blocks
    assert "3" not in str(preemption_finding(75, sizes, {}, LogFacts()).change or "")


@pytest.mark.parametrize("models", ['{"data": [{"max_model_len": "2048"}]}', '{"data": [{"max_model_len": 1e30}]}',
                                    '{"data": [{"max_model_len": true}]}', '{"data": {}}', "[", "null"])
def test_a_max_model_len_no_server_has_is_none(models: str) -> None:
    from qwenops.troubleshoot.live import read_sizes

    assert read_sizes(None, models).max_model_len is None


def test_a_preemption_with_the_cache_from_the_log(tmp_path: Path) -> None:
    """No cache_config_info: the log's 'KV cache size: N tokens' gives the cache, without blocks."""
    from qwenops.troubleshoot.live import read_sizes
    from qwenops.troubleshoot.rules import LogFacts, preemption_finding

    page = "\n".join(line for line in (SIZES_PAGE % ("1", "1")).splitlines() if "cache_config" not in line)
    found = preemption_finding(75, read_sizes(page, None), {"max_num_seqs": 32},
                               LogFacts(1920, "CPU KV cache size: 1,920 tokens"))
    assert found.change == {"max_num_seqs": 4} and found.evidence[1].quote == "CPU KV cache size: 1,920 tokens"


def test_a_clients_400_in_vllm_032s_words_is_request_too_long(tmp_path: Path) -> None:
    log = tmp_path / "client.log"
    log.write_text('ERROR app: HTTP 400: {"error":{"message":"This model\'s maximum context length is 2048 tokens. '
                   'However, your prompt contains at least 2049 input tokens, which exceeds this limit even without '
                   'any output tokens."}}\n')
    code, doc, _ = troubleshoot("--log", str(log))
    found = findings(doc)["request_too_long"]
    assert code == 0 and "prompts of at least 2,049 tokens meet max_model_len 2,048" in str(found["fix"])
