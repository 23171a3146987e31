"""`qwenops status --watch` trends: a bounded window of intervals drawn as sparklines (tokens/s, KV cache
use, requests waiting), read from a scripted /metrics on 127.0.0.1; a value that is n/a is a gap, never 0."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from rich.console import Console, RenderableType

from qwenops.cli.views.status import status_view
from qwenops.status.run import ASCII_BLOCKS, BLOCKS, ServerStatus, Trend, can_draw_blocks, read_status, sparkline
from tests.sse_server import Answer
from tests.unit.test_status_hostile import healthy_routes, scrapes

GEN = "# TYPE vllm:generation_tokens counter\n"


def page(tokens: int, kv: str, waiting: str) -> str:
    return (f"{GEN}vllm:generation_tokens_total {tokens}\nvllm:kv_cache_usage_perc {kv}\n"
            f"vllm:num_requests_waiting {waiting}\nvllm:num_requests_running 1\n")


def draw(renderable: RenderableType) -> str:
    out = io.StringIO()
    Console(file=out, width=140, color_system=None, force_terminal=False).print(renderable)
    return out.getvalue()


def test_sparkline_scales_from_zero_and_leaves_gaps() -> None:
    assert sparkline([0, 1, 2, None, 4, 8]) == "▁▂▃ ▅█"
    assert sparkline([0.0, 0.0]) == "▁▁"  # idle is the lowest block, not a gap
    assert sparkline([None, None]) == "  "  # nothing known is nothing drawn
    assert sparkline([0.5, None, 1.0], ceiling=1.0, ascii_only=True) == "= #"
    assert sparkline([2.0], ceiling=1.0) == "█"  # clipped at the ceiling
    assert set(sparkline([float(i) for i in range(8)], ascii_only=True)) <= set(ASCII_BLOCKS)


def test_the_window_is_bounded() -> None:
    trend = Trend(points=3)
    for _ in range(10):
        trend.add(_status(kv=0.5))
    assert len(trend) == 3 and all(len(s.values) == 3 for s in trend.series())


@pytest.mark.parametrize(("encoding", "blocks"), [("utf-8", True), ("ascii", False), ("latin-1", False),
                                                  (None, False), ("no-such-codec", False)])
def test_blocks_only_where_the_encoding_shows_them(encoding: str | None, blocks: bool) -> None:
    assert can_draw_blocks(encoding) is blocks


def test_a_watch_window_from_a_scripted_server_draws_trends_with_gaps(
        site: Callable[[dict[str, Answer]], object]) -> None:
    # Two scrapes per interval; the third interval's KV usage is NaN (n/a), the fourth's waiting is negative.
    pages = [page(0, "0.1", "0"), page(100, "0.1", "0"),
             page(100, "0.5", "2"), page(300, "0.5", "2"),
             page(300, "nan", "4"), page(600, "nan", "4"),
             page(600, "0.9", "-1"), page(1000, "0.9", "-1")]
    server = site({**healthy_routes(), "/metrics": scrapes(*pages)})
    trend = Trend()
    statuses = []
    for _ in range(4):
        status = read_status(server.url, interval_s=0.2)  # type: ignore[attr-defined]
        trend.add(status)
        statuses.append(status)
    series = {s.name: s for s in trend.series()}
    assert series["KV cache"].values == (0.1, 0.5, None, 0.9)
    assert series["waiting"].values == (0.0, 2.0, 4.0, None)
    rates = series["tokens/s"].values
    assert all(r is not None and r > 0 for r in rates) and rates[0] < rates[1] < rates[2] < rates[3]  # type: ignore[operator]
    text = draw(status_view(statuses[-1], trend))
    kv_line = next(line for line in text.splitlines() if line.strip().startswith("KV cache") and "now" in line)
    assert "▂▅ ▇" in kv_line and "90% used now; scale 0-100%" in kv_line  # the gap is a space, not ▁
    waiting_line = next(line for line in text.splitlines() if line.strip().startswith("waiting"))
    assert "▁▅█ " in waiting_line and "n/a requests waiting now" in waiting_line
    assert "trend: the last 4 intervals" in text
    ascii_text = draw(status_view(statuses[-1], trend, ascii_only=True))
    assert not set(BLOCKS) & set(ascii_text) and "_=# " in ascii_text


def test_without_a_trend_the_view_is_unchanged(site: Callable[[dict[str, Answer]], object]) -> None:
    server = site(healthy_routes())
    status = read_status(server.url, interval_s=0.2)  # type: ignore[attr-defined]
    assert "trend" not in draw(status_view(status))


def _status(kv: float | None) -> ServerStatus:
    return ServerStatus(base_url="http://x", healthy=True, models=(), uptime_s=None, requests_running=None,
                        requests_waiting=None, kv_cache_usage=kv, preemptions_total=None, interval_s=1.0,
                        generation_tokens_per_s=None, prompt_tokens_per_s=None, requests_finished=None,
                        ttft_p50_s=None, ttft_p99_s=None, tpot_p50_s=None, tpot_p99_s=None, itl_p50_s=None)
