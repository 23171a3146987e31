"""`qwenops status` and `troubleshoot --base-url` against hostile and broken servers on 127.0.0.1.

Each server is a real socket (tests/sse_server.py's scripted server): bodies without end, gzip
bombs, a byte every so often, headers that never end, redirects to other hosts and in loops, HTML
login pages, values no server can mean. Every case must cost bounded memory and time and end in
one line with exit 1, 2 or 3 (never 4), and no value that cannot be true is printed as a fact.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qwenops import untrusted
from qwenops.cli import cli
from tests.conftest import REPO
from tests.sse_server import Answer, Conn, ScriptedServer, Seen

RECORDED = REPO / "tests" / "data" / "metrics" / "vllm_cpu_metrics.txt"
PROM = "text/plain; version=0.0.4; charset=utf-8"
MODELS = json.dumps({"object": "list", "data": [{"id": "Qwen3-14B", "object": "model"}]}).encode()


# ------------------------------------------------------------------------------------------ servers


def reply(status: int, body: bytes, content_type: str = "application/json", *,
          headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    def answer(conn: Conn, _seen: Seen) -> None:
        lines = [f"HTTP/1.1 {status} X", f"content-type: {content_type}", f"content-length: {len(body)}",
                 "connection: close", *(f"{k}: {v}" for k, v in headers)]
        conn.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return answer


def metrics(text: str | bytes) -> Answer:
    return reply(200, text.encode() if isinstance(text, str) else text, PROM)


def healthy_routes(page: str | None = None) -> dict[str, Answer]:
    return {"/health": reply(200, b""), "/v1/models": reply(200, MODELS),
            "/metrics": metrics(page if page is not None else RECORDED.read_text())}


class Site:
    """A scripted server answering by path; `sent` counts the body bytes each answer wrote."""

    def __init__(self, routes: dict[str, Answer]) -> None:
        self.routes = routes
        self.server = ScriptedServer(self._answer, answer_gets=True)
        self.url = self.server.base_url

    def _answer(self, conn: Conn, seen: Seen) -> None:
        route = self.routes.get(seen.path.split("?")[0])
        if route is None:
            reply(404, b'{"detail":"Not Found"}')(conn, seen)
        else:
            route(conn, seen)

    @property
    def seen(self) -> list[Seen]:
        return self.server.seen

    def close(self) -> None:
        self.server.close()


def qwenops(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def status_json(url: str, *more: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, object], str]:
    code, out, err = qwenops("status", "--base-url", url, "--interval", "0.2", "--json", *more, env=env)
    assert code != 4, (out, err)
    return code, json.loads(out), err


def one_error(doc: dict[str, object]) -> dict[str, str]:
    errors = doc["errors"]
    assert isinstance(errors, list) and len(errors) == 1, errors
    return errors[0]  # type: ignore[no-any-return]


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines and timeouts short enough for a test (the code reads them when it calls)."""
    monkeypatch.setattr(untrusted, "HTTP_TOTAL_DEADLINE_S", 1.5)
    monkeypatch.setattr(untrusted, "HTTP_READ_TIMEOUT_S", 0.5)


# ------------------------------------------------------------------------------------ a good server


def test_a_healthy_server_is_ok(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site(healthy_routes())
    code, doc, _ = status_json(server.url)
    assert code == 0, doc
    data = doc["data"]
    assert isinstance(data, dict) and data["ok"] is True and data["problems"] == []
    assert data["models"] == ["Qwen3-14B"] and data["kv_cache_usage"] == 0.0


# ------------------------------------------------------------------------------------------- sizes


def chunked_head(conn: Conn, *headers: str) -> None:
    conn.send(("\r\n".join(["HTTP/1.1 200 OK", f"content-type: {PROM}", "transfer-encoding: chunked",
                             "connection: close", *headers]) + "\r\n\r\n").encode())


def gzip_bomb(decoded_mib: int) -> Answer:
    """200 and /metrics gzip-encoded, inflating to DECODED_MIB MiB of '#', compressed as it is sent."""
    def answer(conn: Conn, _seen: Seen) -> None:
        chunked_head(conn, "content-encoding: gzip")
        squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b"#" * (1 << 20)
        for _ in range(decoded_mib):
            piece = squeeze.compress(block)
            if piece and not conn.chunk(piece):  # an empty chunk would end the body
                return
        conn.chunk(squeeze.flush())
        conn.end_chunks()

    return answer


def endless(piece: bytes, counter: list[int]) -> Answer:
    """200, then PIECE again and again as chunks until the client goes; COUNTER[0] is the bytes sent."""
    def answer(conn: Conn, _seen: Seen) -> None:
        conn.head(200, PROM, chunked=True)
        while counter[0] < 2 * 1024 * 1024 * 1024 and conn.chunk(piece):
            counter[0] += len(piece)

    return answer


def test_a_gzip_bomb_stops_at_the_cap(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({**healthy_routes(), "/metrics": gzip_bomb(4096)})
    code, doc, _ = status_json(server.url)
    assert code == 3
    error = one_error(doc)
    assert error["code"] == "answer_too_large" and "more than 8 MiB" in error["message"]


def test_a_gzip_bomb_costs_bounded_memory(site: Callable[[dict[str, Answer]], Site], tmp_path: Path) -> None:
    """In a process of its own, whose one child is the command, so the peak memory measured is the
    command's: 4 GiB offered, the command stays small."""
    server = site({**healthy_routes(), "/metrics": gzip_bomb(4096)})
    (tmp_path / "none.env").touch()
    measure = ("import json, resource, subprocess, sys\n"
               "done = subprocess.run([sys.executable, '-m', 'qwenops', 'status', '--base-url', sys.argv[1], "
               "'--json'], capture_output=True, text=True)\n"
               "print(json.dumps([done.returncode, done.stdout, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n")
    done = subprocess.run([sys.executable, "-c", measure, server.url], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "QWENOPS_ENV_FILE": str(tmp_path / "none.env")}, timeout=120,
                          check=True)
    code, out, peak_kib = json.loads(done.stdout)
    assert code == 3 and json.loads(out)["errors"][0]["code"] == "answer_too_large"
    assert peak_kib / 1024 < 300, f"peak {peak_kib / 1024:.0f} MiB"


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip, gzip"])
def test_an_encoding_not_asked_for_is_one_line(site: Callable[[dict[str, Answer]], Site], encoding: str) -> None:
    server = site({**healthy_routes(), "/metrics": reply(200, b"\x1f\x8b" + b"x" * 1000, PROM,
                                                         headers=(("content-encoding", encoding),))})
    code, doc, _ = status_json(server.url)
    assert code == 3
    assert one_error(doc)["code"] == "unreadable_answer"


def test_a_body_without_end_stops_at_the_cap(site: Callable[[dict[str, Answer]], Site]) -> None:
    sent = [0]
    server = site({**healthy_routes(), "/metrics": endless(b"vllm:num_requests_running 1\n" * 1000, sent)})
    code, doc, _ = status_json(server.url)
    assert code == 3 and one_error(doc)["code"] == "answer_too_large"
    assert sent[0] < 64 * 1024 * 1024  # the client hung up near the cap (socket buffers hold the rest)


def test_a_line_without_end_stops_at_the_cap(site: Callable[[dict[str, Answer]], Site]) -> None:
    sent = [0]
    server = site({**healthy_routes(), "/metrics": endless(b"x" * 65536, sent)})
    code, doc, _ = status_json(server.url)
    assert code == 3 and "more than 8 MiB" in one_error(doc)["message"]


def test_a_million_samples_are_refused_before_parsing(site: Callable[[dict[str, Answer]], Site]) -> None:
    page = "".join(f"a{i} 1\n" for i in range(1_000_000))[: 8 * 1024 * 1024 - 1]
    server = site({**healthy_routes(), "/metrics": metrics(page)})
    code, doc, _ = status_json(server.url)
    assert code == 3
    error = one_error(doc)
    assert error["code"] == "answer_too_large" and "more than 100,000 samples" in error["message"]


def test_a_line_of_many_labels_is_refused_before_parsing(site: Callable[[dict[str, Answer]], Site]) -> None:
    """prometheus_client re-reads the rest of a line for each label: 700,000 labels on one line (8 MiB) held
    status for minutes (audit 4). A line is capped instead."""
    labels = ",".join(f'l{i}="v"' for i in range(200_000))
    page = f'vllm:num_requests_running{{model_name="m",{labels}}} 1\n'
    server = site({**healthy_routes(), "/metrics": metrics(page)})
    code, doc, _ = status_json(server.url)
    assert code == 3
    error = one_error(doc)
    assert error["code"] == "answer_too_large" and "a line of more than 16,384 characters" in error["message"]


# --------------------------------------------------------------------------------------------- time


def trickle(every_s: float, *, head: bool) -> Answer:
    """A byte at a time, forever: of the body (HEAD: the headers sent first) or of the headers themselves."""
    def answer(conn: Conn, _seen: Seen) -> None:
        if head:
            conn.head(200, PROM, chunked=True)
            while conn.chunk(b"#") and conn.sleep(every_s):
                pass
        else:
            conn.send(b"HTTP/1.1 200 OK\r\n")
            while conn.send(b"x") and conn.sleep(every_s):
                pass

    return answer


def silent(conn: Conn, _seen: Seen) -> None:
    conn.sleep(30)  # accepts, reads the request, never answers


@pytest.mark.parametrize("path", ["/metrics", "/v1/models"])
@pytest.mark.parametrize("head", [True, False], ids=["trickled-body", "slowloris-headers"])
def test_a_trickle_meets_the_total_deadline(site: Callable[[dict[str, Answer]], Site], quick: None,
                                            path: str, head: bool) -> None:
    server = site({**healthy_routes(), path: trickle(0.1, head=head)})
    code, doc, _ = status_json(server.url)
    assert code == 3
    error = one_error(doc)
    assert error["code"] == "timeout" and "within 1.5 s" in error["message"], error


def test_a_server_that_never_answers_is_unreachable(site: Callable[[dict[str, Answer]], Site], quick: None) -> None:
    server = site({"/health": silent, "/v1/models": silent, "/metrics": silent})
    code, doc, _ = status_json(server.url)
    assert code == 3 and one_error(doc)["code"] == "timeout"


def test_the_deadline_is_a_parameter_of_the_core(site: Callable[[dict[str, Answer]], Site]) -> None:
    from qwenops.httpread import NoAnswerInTime
    from qwenops.troubleshoot.live import scrape_metrics

    server = site({"/metrics": trickle(0.1, head=True)})
    with pytest.raises(NoAnswerInTime, match=r"within 0\.5 s"):
        scrape_metrics(server.url, deadline_s=0.5)


# ----------------------------------------------------------------------------------- values and scrapes


def test_values_that_cannot_be_true_are_not_printed(site: Callable[[dict[str, Answer]], Site]) -> None:
    page = ("vllm:num_requests_running inf\nvllm:num_requests_waiting -5\nvllm:kv_cache_usage_perc nan\n"
            "vllm:num_preemptions_total 1e300\nprocess_start_time_seconds 99999999999\n")
    server = site(healthy_routes(page))
    code, doc, _ = status_json(server.url)
    assert code == 1
    data = doc["data"]
    assert isinstance(data, dict)
    for key in ("requests_running", "requests_waiting", "kv_cache_usage", "preemptions_total", "uptime_s"):
        assert data[key] is None, key
    problems = "\n".join(data["problems"])
    for said in ("inf, not a number", "-5, negative", "nan, not a number", "1e+300, beyond", "uptime"):
        assert said in problems
    code, out, _ = qwenops("status", "--base-url", server.url, "--interval", "0.2")
    assert code == 1
    assert "inf" not in out.split("problem:")[0] and "n/a running, n/a waiting" in out
    assert "problem: requests running: vllm:num_requests_running = inf, not a number" in out


def scrapes(*pages: str) -> Answer:
    """Each scrape the next page (the last one repeats)."""
    served = [0]

    def answer(conn: Conn, seen: Seen) -> None:
        page = pages[min(served[0], len(pages) - 1)]
        served[0] += 1
        metrics(page)(conn, seen)

    return answer


def unrated(site: Callable[[dict[str, Answer]], Site], before: str, after: str) -> dict[str, Any]:
    """status --json over two scrapes that give no rate: exit 1, its data."""
    server = site({**healthy_routes(), "/metrics": scrapes(before, after)})
    code, doc, _ = status_json(server.url)
    data = doc["data"]
    assert code == 1 and isinstance(data, dict)
    assert data["generation_tokens_per_s"] is None
    return data


def test_a_counter_that_went_backwards_is_a_restart_not_a_rate(site: Callable[[dict[str, Answer]], Site]) -> None:
    typed = "# TYPE vllm:generation_tokens counter\n# TYPE vllm:request_success counter\n"
    before = typed + "vllm:generation_tokens_total 5000\nvllm:request_success_total 40\n"
    after = typed + "vllm:generation_tokens_total 10\nvllm:request_success_total 1\n"
    data = unrated(site, before, after)
    assert data["requests_finished"] is None
    assert any("restarted between the scrapes" in p for p in data["problems"])


def test_a_second_scrape_answering_500_is_not_healthy(site: Callable[[dict[str, Answer]], Site]) -> None:
    pages = [metrics(RECORDED.read_text()), reply(500, b'{"detail":"boom"}')]
    served = [0]

    def answer(conn: Conn, seen: Seen) -> None:
        pages[min(served[0], 1)](conn, seen)
        served[0] += 1

    server = site({**healthy_routes(), "/metrics": answer})
    code, doc, _ = status_json(server.url)
    data = doc["data"]
    assert code == 1 and isinstance(data, dict) and data["ok"] is False
    assert any("second scrape" in p and "HTTP 500" in p for p in data["problems"])


def test_health_500_is_exit_1_as_documented(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({**healthy_routes(), "/health": reply(500, b""), "/metrics": reply(500, b"")})
    code, doc, _ = status_json(server.url)
    data = doc["data"]
    assert code == 1 and isinstance(data, dict) and data["healthy"] is False and "500" in data["health"]


HIST = "# TYPE vllm:time_to_first_token_seconds histogram\n"


@pytest.mark.parametrize(("buckets", "said"), [
    ('vllm:time_to_first_token_seconds_bucket{x="1"} 1\n', "has no le label"),
    ('vllm:time_to_first_token_seconds_bucket{le="abc"} 1\n', "le='abc', not a number"),
    ('vllm:time_to_first_token_seconds_bucket{le="0.1"} 1\nvllm:time_to_first_token_seconds_bucket{le="0.1"} 1\n'
     'vllm:time_to_first_token_seconds_bucket{le="+Inf"} 1\n', "repeats the bucket"),
    ('vllm:time_to_first_token_seconds_bucket{le="0.1"} 5\nvllm:time_to_first_token_seconds_bucket{le="+Inf"} 2\n',
     "not cumulative"),
    ('vllm:time_to_first_token_seconds_bucket{le="0.1"} 5\n', "no +Inf bucket"),
    ('vllm:time_to_first_token_seconds_bucket{le="+Inf"} nan\n', "not a number"),
])
def test_broken_histograms_are_named_not_a_crash(site: Callable[[dict[str, Answer]], Site], buckets: str,
                                                 said: str) -> None:
    server = site(healthy_routes("vllm:num_requests_running 0\n" + HIST + buckets))
    code, doc, _ = status_json(server.url)
    data = doc["data"]
    assert code == 1 and isinstance(data, dict)
    assert data["ttft_p50_s"] is None
    assert any(said in p for p in data["problems"]), data["problems"]


def test_unsorted_buckets_are_read_in_order(site: Callable[[dict[str, Answer]], Site]) -> None:
    page = ("vllm:num_requests_running 0\n" + HIST
            + 'vllm:time_to_first_token_seconds_bucket{le="+Inf"} 10\n'
            + 'vllm:time_to_first_token_seconds_bucket{le="0.5"} 10\n'
            + 'vllm:time_to_first_token_seconds_bucket{le="0.1"} 4\n'
            + "vllm:time_to_first_token_seconds_count 10\nvllm:time_to_first_token_seconds_sum 2\n")
    server = site(healthy_routes(page))
    code, doc, _ = status_json(server.url)
    assert code == 0, doc


def test_a_duplicated_series_is_not_summed(site: Callable[[dict[str, Answer]], Site]) -> None:
    page = "vllm:num_requests_running{m=\"a\"} 1\nvllm:num_requests_running{m=\"a\"} 1\n"
    server = site(healthy_routes(page))
    code, doc, _ = status_json(server.url)
    data = doc["data"]
    assert code == 1 and isinstance(data, dict) and data["requests_running"] is None
    assert any("repeats the series" in p for p in data["problems"])


def test_bytes_that_are_not_utf8_are_not_a_crash(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site(healthy_routes())
    server.routes["/metrics"] = metrics(b"vllm:num_requests_running 0\n\xff\xfe\x80 1\n")
    code, doc, _ = status_json(server.url)
    assert code == 1
    assert any("not Prometheus text" in p for p in doc["data"]["problems"])  # type: ignore[index]


def test_hostile_model_names_are_cleaned_and_capped(site: Callable[[dict[str, Answer]], Site]) -> None:
    listed = [{"id": "\x1b]8;;http://evil\x07click\x1b[2J" + "x" * 500}] + [{"id": f"m{i}"} for i in range(100)]
    server = site({**healthy_routes(), "/v1/models": reply(200, json.dumps({"data": listed}).encode())})
    code, doc, _ = status_json(server.url)
    models = doc["data"]["models"]  # type: ignore[index]
    assert code == 0
    assert "\x1b" not in models[0] and len(models[0]) <= 200
    assert len(models) == 17 and models[-1] == "… 85 more"


# -------------------------------------------------------------------- what answers instead of vLLM


def test_a_login_page_is_not_healthy(site: Callable[[dict[str, Answer]], Site]) -> None:
    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>login</body></html>"
    server = site({"/health": reply(200, page, "text/html"), "/v1/models": reply(200, page, "text/html"),
                   "/metrics": reply(200, page, "text/html")})
    code, doc, _ = status_json(server.url)
    data = doc["data"]
    assert code == 1 and isinstance(data, dict)
    problems = " ".join(data["problems"])
    assert "'Sign in'" in problems and "login proxy" in problems and "disable-log-stats" not in problems


def test_a_redirect_to_another_host_is_not_followed(site: Callable[[dict[str, Answer]], Site]) -> None:
    elsewhere = site(healthy_routes())
    login = ((("location", f"{elsewhere.url}/login"),))
    server = site({path: reply(302, b"", "text/html", headers=login) for path in ("/health", "/v1/models", "/metrics")})
    code, doc, _ = status_json(server.url, env={"QWENOPS_API_KEY": "sk-secret", "QWENOPS_BASE_URL": server.url})
    assert code == 1
    assert elsewhere.seen == []  # not followed: the key never went there
    assert all(s.headers.get("authorization") == "Bearer sk-secret" for s in server.seen)
    assert any("another host, not followed" in p for p in doc["data"]["problems"])  # type: ignore[index]


def test_a_redirect_loop_ends(site: Callable[[dict[str, Answer]], Site]) -> None:
    routes: dict[str, Answer] = {}
    server = site(routes)
    routes.update({"/health": reply(307, b"", headers=(("location", "/health2"),)),
                   "/health2": reply(307, b"", headers=(("location", f"{server.url}/health"),)),
                   "/v1/models": reply(200, MODELS), "/metrics": metrics(RECORDED.read_text())})
    code, doc, _ = status_json(server.url)
    assert code == 1
    assert doc["data"]["health"].endswith("(a loop, not followed)")  # type: ignore[index]
    assert len([s for s in server.seen if s.path.startswith("/health")]) == 2


def test_a_same_host_redirect_is_followed(site: Callable[[dict[str, Answer]], Site]) -> None:
    routes = healthy_routes()
    routes["/metrics/"] = routes["/metrics"]
    routes["/metrics"] = reply(307, b"", headers=(("location", "/metrics/"),))  # Starlette's Mount did this
    server = site(routes)
    code, doc, _ = status_json(server.url)
    assert code == 0, doc


def test_a_401_says_where_the_key_goes(site: Callable[[dict[str, Answer]], Site]) -> None:
    refused = reply(401, b'{"error":"Unauthorized"}')
    server = site({**healthy_routes(), "/v1/models": refused})
    code, doc, _ = status_json(server.url)
    data = doc["data"]
    assert code == 1 and isinstance(data, dict) and data["models"] == []
    problem = next(p for p in data["problems"] if p.startswith("/v1/models"))
    assert "QWENOPS_API_KEY is not set" in problem and "--api-key" in problem


# ------------------------------------------------------------------------------------------- the key


def keyed(key: str, answer: Answer) -> Answer:
    """vLLM with --api-key: 401 without `Authorization: Bearer KEY`."""
    def check(conn: Conn, seen: Seen) -> None:
        if seen.headers.get("authorization") != f"Bearer {key}":
            reply(401, b'{"error":"Unauthorized"}')(conn, seen)
        else:
            answer(conn, seen)

    return check


def test_the_configured_key_goes_with_every_request(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({path: keyed("sk-1", answer) for path, answer in healthy_routes().items()})
    code, doc, _ = status_json(server.url, env={"QWENOPS_API_KEY": "sk-1", "QWENOPS_BASE_URL": server.url})
    assert code == 0, doc
    assert len(server.seen) == 4 and all(s.headers["authorization"] == "Bearer sk-1" for s in server.seen)


def test_the_key_never_goes_to_a_url_it_was_not_set_for(site: Callable[[dict[str, Answer]], Site]) -> None:
    configured = site(healthy_routes())
    other = site(healthy_routes())
    code, _, _ = status_json(other.url, env={"QWENOPS_API_KEY": "sk-1", "QWENOPS_BASE_URL": configured.url})
    assert code == 0
    assert other.seen and all("authorization" not in s.headers for s in other.seen)


# -------------------------------------------------------------------------------------- bad input


def test_a_password_in_the_url_is_never_printed(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site(healthy_routes())
    url = server.url.replace("http://", "http://admin:hunter2@")
    for args in (("--json",), ()):
        code, out, err = qwenops("status", "--base-url", url, "--interval", "0.2", *args)
        assert code == 0 and "hunter2" not in out + err and "***@" in out
    server.routes["/metrics"] = reply(500, b"")
    code, out, err = qwenops("status", "--base-url", url, "--interval", "0.2")
    assert code == 1 and "hunter2" not in out + err


def test_a_password_in_an_unreachable_url_is_never_printed() -> None:
    code, out, err = qwenops("status", "--base-url", "http://admin:hunter2@127.0.0.1:1", "--json")
    assert code == 3 and "hunter2" not in out + err


@pytest.mark.parametrize("interval", ["nan", "inf", "-1", "abc"])
def test_an_interval_that_is_not_seconds_is_bad_input(interval: str) -> None:
    code, out, _ = qwenops("status", "--base-url", "http://127.0.0.1:1", "--interval", interval, "--json")
    assert code == 2 and json.loads(out)["errors"][0]["field"] == "--interval"


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".com"])
def test_a_host_idna_refuses_is_bad_input(host: str) -> None:
    code, out, _ = qwenops("status", "--base-url", f"http://{host}:8000", "--json")
    assert code == 2 and "host name" in json.loads(out)["errors"][0]["message"]


def test_watch_into_a_closed_pipe_ends_quietly(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site(healthy_routes())
    child = subprocess.Popen([sys.executable, "-m", "qwenops", "status", "--base-url", server.url, "--watch",
                              "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert child.stdout is not None and child.stdout.readline()  # one line arrived
    child.stdout.close()  # `| head -1` has what it wanted
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0 and b"Traceback" not in err and err == b"", err


@pytest.mark.parametrize(("encoding", "squeeze"), [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),  # zlib-wrapped, as the RFC says
    ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send it
])
def test_encoded_metrics_are_read(site: Callable[[dict[str, Answer]], Site], encoding: str,
                                  squeeze: Callable[[bytes], bytes]) -> None:
    page = squeeze(RECORDED.read_bytes())
    server = site({**healthy_routes(), "/metrics": reply(200, page, PROM, headers=(("content-encoding", encoding),))})
    code, doc, _ = status_json(server.url)
    assert code == 0, doc


def test_a_deflate_bomb_stops_at_the_cap(site: Callable[[dict[str, Answer]], Site]) -> None:
    bomb = zlib.compress(b"#" * (256 * 1024 * 1024), 9)  # 256 MiB in about 250 KiB
    server = site({**healthy_routes(), "/metrics": reply(200, bomb, PROM, headers=(("content-encoding", "deflate"),))})
    code, doc, _ = status_json(server.url)
    assert code == 3 and one_error(doc)["code"] == "answer_too_large"


def test_a_body_that_does_not_decode_is_one_line(site: Callable[[dict[str, Answer]], Site]) -> None:
    server = site({**healthy_routes(), "/metrics": reply(200, b"not gzip at all", PROM,
                                                         headers=(("content-encoding", "gzip"),))})
    code, doc, _ = status_json(server.url)
    assert code == 3 and one_error(doc)["code"] == "unreadable_answer"


def test_threads_left_behind_are_none() -> None:
    """The deadline timers are cancelled once an answer is read (none of them outlives its request)."""
    assert not [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def test_a_rate_is_taken_over_the_same_series_only(site: Callable[[dict[str, Answer]], Site]) -> None:
    """A counter's series renamed between the scrapes (audit 5: `model_name="m1"` 100, then `"m2"` 200) was shown
    as 100 tokens/s, and a gauge of 50,000 label sets as 50,001 running: a difference of sums over different series,
    and a sum of series no vLLM writes, are no readings. vLLM creates every series at start-up."""
    typed = "# TYPE vllm:generation_tokens counter\n"
    before = typed + 'vllm:generation_tokens_total{model_name="m1"} 100\n'
    after = typed + 'vllm:generation_tokens_total{model_name="m2"} 200\n'
    data = unrated(site, before, after)
    assert any("series changed between the scrapes" in p for p in data["problems"])
    # the same series in both scrapes: a rate, as ever
    same = typed + 'vllm:generation_tokens_total{model_name="m1"} 300\n'
    server = site({**healthy_routes(), "/metrics": scrapes(before, same)})
    code, doc, _ = status_json(server.url)
    assert isinstance(doc["data"], dict) and (doc["data"]["generation_tokens_per_s"] or 0) > 0
    many = "# TYPE vllm:num_requests_running gauge\n" + "".join(
        f'vllm:num_requests_running{{model_name="m{i}"}} 1\n' for i in range(50_000))
    server = site({**healthy_routes(), "/metrics": scrapes(many)})
    code, doc, _ = status_json(server.url)
    crowded = doc["data"]
    assert code == 1 and isinstance(crowded, dict) and crowded["requests_running"] is None
    assert any("50,000 series, more than 256" in p for p in crowded["problems"])
