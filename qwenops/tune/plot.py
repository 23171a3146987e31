"""`qwenops tune --plot FILE.svg`: goodput against concurrency, one line per measured candidate (the chosen
one drawn bold), and below it the two latencies the SLO bounds (TTFT p99, TPOT p99) with the SLO's lines.

Written by hand, not with a plotting library: the chart is fixed (three panels, a line per candidate, a
legend: a few dozen elements), and the libraries small enough to take on either leave the same layout to
us (svgwrite, drawsvg) or add script, styles and untyped code for tooltips nobody asked for (pygal);
matplotlib costs seconds to import and is no dependency. Every text that comes from data (the profile's
name, the workload, candidate keys) goes through xml.sax.saxutils.escape or quoteattr, never into the
markup as is.

Also a command of its own, to draw a saved result again without measuring:
    qwenops tune ... --json > result.json
    python -m qwenops.tune.plot result.json tune.svg
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from qwenops.tune.results import CandidateResult, LevelResult, TuneResult

# Colour-blind-safe (Okabe-Ito), then repeated with a dash so that a ninth line is still told apart.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
SLO_COLOUR = "#C0392B"

WIDTH = 820
MARGIN_L, MARGIN_R = 70, 30
TOP_Y, TOP_H = 96, 260  # the goodput panel
LOW_Y, LOW_H = TOP_Y + TOP_H + 70, 170  # the two latency panels
LEGEND_Y = LOW_Y + LOW_H + 60
LEGEND_ROW = 18
MAX_LEGEND_ROWS = 40  # more candidates than this are drawn, and counted in one legend line


def _a(value: object) -> str:
    """An attribute value, quoted and escaped."""
    return quoteattr(str(value))


def _num(value: float) -> str:
    return f"{value:.1f}"


def _fmt(value: float) -> str:
    """A tick label: 0.25, 2, 1.5k."""
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:.3g}" if value < 10 else f"{value:.0f}"


def _nice_max(value: float) -> float:
    """The axis top: 1, 2, 2.5 or 5 times a power of ten, at or above value (1 when there is nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class Panel:
    """A plot area: x is log2 of concurrency between the lowest and highest level measured, y is linear."""

    x: float
    y: float
    width: float
    height: float
    c_min: int
    c_max: int
    y_max: float

    def px(self, concurrency: int) -> float:
        if self.c_max <= self.c_min:
            return self.x + self.width / 2
        span = math.log2(self.c_max) - math.log2(self.c_min)
        return self.x + (math.log2(concurrency) - math.log2(self.c_min)) / span * self.width

    def py(self, value: float) -> float:
        return self.y + self.height - min(max(value, 0.0), self.y_max) / self.y_max * self.height


def measured(result: TuneResult) -> list[CandidateResult]:
    """The candidates the chart draws: measured, with at least one level."""
    return [r for r in result.candidates if r.status == "measured" and r.levels]


def _frame(panel: Panel, *, name: str, title: str, unit: str, ticks: Sequence[int]) -> list[str]:
    out = [f'<g class="panel" data-panel={_a(name)} data-ymax={_a(panel.y_max)} data-top={_a(panel.y)} '
           f'data-height={_a(panel.height)}>',
           f'<text x="{_num(panel.x)}" y="{_num(panel.y - 10)}" class="ptitle">{escape(title)}</text>',
           f'<rect x="{_num(panel.x)}" y="{_num(panel.y)}" width="{_num(panel.width)}" height="{_num(panel.height)}" '
           'fill="none" stroke="#999"/>']
    for i in range(5):
        value = panel.y_max * i / 4
        y = panel.py(value)
        out.append(f'<line x1="{_num(panel.x)}" x2="{_num(panel.x + panel.width)}" y1="{_num(y)}" y2="{_num(y)}" '
                   'stroke="#eee"/>' if i else "")
        out.append(f'<text x="{_num(panel.x - 6)}" y="{_num(y + 4)}" text-anchor="end" class="tick">'
                   f'{escape(_fmt(value))}</text>')
    for c in ticks:
        x = panel.px(c)
        out.append(f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{_num(panel.y + panel.height)}" '
                   f'y2="{_num(panel.y + panel.height + 4)}" stroke="#999"/>')
        out.append(f'<text x="{_num(x)}" y="{_num(panel.y + panel.height + 16)}" text-anchor="middle" '
                   f'class="tick">{c}</text>')
    out.append(f'<text x="{_num(panel.x + panel.width / 2)}" y="{_num(panel.y + panel.height + 32)}" '
               'text-anchor="middle" class="axis">concurrency (requests in flight)</text>')
    out.append(f'<text transform="translate({_num(panel.x - 48)},{_num(panel.y + panel.height / 2)}) rotate(-90)" '
               f'text-anchor="middle" class="axis">{escape(unit)}</text>')
    out.append("</g>")
    return [line for line in out if line]


def _path(panel: Panel, levels: Sequence[LevelResult], value: Callable[[LevelResult], float | None]) -> str:
    """Points joined in order of concurrency; a level without the value (no request completed) is a gap."""
    parts: list[str] = []
    pen_down = False
    for level in sorted(levels, key=lambda lv: lv.concurrency):
        v = value(level)
        if v is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{_num(panel.px(level.concurrency))},{_num(panel.py(v))}")
        pen_down = True
    return " ".join(parts)


def _series(panel: Panel, r: CandidateResult, index: int, *, chosen: bool,
            value: Callable[[LevelResult], float | None], what: str) -> list[str]:
    colour = PALETTE[index % len(PALETTE)]
    dash = "" if index < len(PALETTE) else ' stroke-dasharray="6 3"'
    width = 3.5 if chosen else 1.6
    opacity = 1.0 if chosen else 0.8
    d = _path(panel, r.levels, value)
    out = [f'<g class="series" data-key={_a(r.candidate.key)} data-chosen={_a(str(chosen).lower())}>',
           f"<title>{escape(r.candidate.key)}{' (chosen)' if chosen else ''}</title>"]
    if d:
        out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="{width}" '
                   f'stroke-opacity="{opacity}"{dash}/>')
    for level in r.levels:
        v = value(level)
        if v is None:
            continue
        out.append(f'<circle cx="{_num(panel.px(level.concurrency))}" cy="{_num(panel.py(v))}" '
                   f'r="{4.5 if chosen else 2.8}" fill="{colour}"><title>'
                   f'{escape(f"{r.candidate.key}: {what} {v:g} at concurrency {level.concurrency}")}'
                   "</title></circle>")
    out.append("</g>")
    return out


def _slo_line(panel: Panel, name: str, ms: float) -> list[str]:
    y = panel.py(ms)
    return [f'<g class="slo" data-metric={_a(name)} data-ms={_a(ms)}>',
            f'<line x1="{_num(panel.x)}" x2="{_num(panel.x + panel.width)}" y1="{_num(y)}" y2="{_num(y)}" '
            f'stroke="{SLO_COLOUR}" stroke-width="1.5" stroke-dasharray="5 4"/>',
            f'<text x="{_num(panel.x + 4)}" y="{_num(y - 5)}" class="slolabel">'
            f'SLO {escape(f"{ms:g}")} ms</text>', "</g>"]


def _clip(text: str, most: int = 110) -> str:
    """One line that fits the width (a workload file's path can be long); escaped after, by the caller."""
    return text if len(text) <= most else text[:most - 1] + "…"


def _top(values: Sequence[float | None], floor: float = 0.0) -> float:
    return _nice_max(max([v for v in values if v is not None] + [floor]) * 1.1)


def render_svg(result: TuneResult) -> str:
    """The chart of a tuning run as one SVG document (text)."""
    drawn = measured(result)
    concurrencies = sorted({level.concurrency for r in drawn for level in r.levels}) or [1]
    c_min, c_max = concurrencies[0], concurrencies[-1]
    levels = [level for r in drawn for level in r.levels]
    inner = WIDTH - MARGIN_L - MARGIN_R
    top = Panel(MARGIN_L, TOP_Y, inner, TOP_H, c_min, c_max, _top([lv.goodput_rps for lv in levels]))
    half = (inner - 80) / 2
    slo = result.slo
    ttft = Panel(MARGIN_L, LOW_Y, half, LOW_H, c_min, c_max,
                 _top([lv.ttft_p99_ms for lv in levels], slo.ttft_ms))
    tpot = Panel(MARGIN_L + half + 80, LOW_Y, half, LOW_H, c_min, c_max,
                 _top([lv.tpot_p99_ms for lv in levels], slo.tpot_ms))
    rows = min(len(drawn), MAX_LEGEND_ROWS) + (1 if len(drawn) > MAX_LEGEND_ROWS else 0) + 1
    height = LEGEND_Y + rows * LEGEND_ROW + 20

    title = f"qwenops tune: profile {result.profile}, goodput under SLO {slo.describe()}"
    subtitle = (f"goodput = requests/s that met both SLOs (DistServe's definition); {len(drawn)} of "
                f"{len(result.candidates)} candidates measured, the chosen one bold")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
           "<style>.title{font-size:15px;font-weight:bold}.sub{fill:#555}.ptitle{font-weight:bold}"
           ".tick{fill:#555;font-size:10px}.axis{fill:#333;font-size:11px}"
           f".slolabel{{fill:{SLO_COLOUR};font-size:11px}}</style>",
           f"<title>{escape(title)}</title>",
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{MARGIN_L}" y="24" class="title">{escape(title)}</text>',
           f'<text x="{MARGIN_L}" y="42" class="sub">{escape(_clip(f"workload: {result.workload}"))}</text>',
           f'<text x="{MARGIN_L}" y="60" class="sub">{escape(subtitle)}</text>']
    out += _frame(top, name="goodput", title="goodput (req/s within the SLO)", unit="req/s", ticks=concurrencies)
    out += _frame(ttft, name="ttft", title="TTFT p99 (ms), SLO dashed", unit="ms", ticks=concurrencies)
    out += _frame(tpot, name="tpot", title="TPOT p99 (ms), SLO dashed", unit="ms", ticks=concurrencies)
    out += _slo_line(ttft, "ttft", slo.ttft_ms)
    out += _slo_line(tpot, "tpot", slo.tpot_ms)
    if not drawn:
        out.append(f'<text x="{_num(top.x + top.width / 2)}" y="{_num(top.y + top.height / 2)}" '
                   'text-anchor="middle" class="sub">no candidate was measured: nothing to draw</text>')
    # The chosen line last, so that it is drawn over the others.
    order = sorted(range(len(drawn)), key=lambda i: drawn[i].candidate == result.chosen)
    for name, panel, value, what in (
            ("goodput", top, lambda lv: lv.goodput_rps, "goodput req/s"),
            ("ttft", ttft, lambda lv: lv.ttft_p99_ms, "TTFT p99 ms"),
            ("tpot", tpot, lambda lv: lv.tpot_p99_ms, "TPOT p99 ms")):
        out.append(f'<g class="lines" data-panel={_a(name)}>')
        for i in order:
            out += _series(panel, drawn[i], i, chosen=drawn[i].candidate == result.chosen, value=value, what=what)
        out.append("</g>")
    out += _legend(drawn, result)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(drawn: Sequence[CandidateResult], result: TuneResult) -> list[str]:
    out = ['<g class="legend">',
           f'<text x="{MARGIN_L}" y="{LEGEND_Y - 6}" class="ptitle">candidates (max_num_seqs, '
           "max_num_batched_tokens, max_model_len): best goodput at concurrency</text>"]
    for i, r in enumerate(drawn[:MAX_LEGEND_ROWS]):
        chosen = r.candidate == result.chosen
        y = LEGEND_Y + (i + 1) * LEGEND_ROW - 4
        colour = PALETTE[i % len(PALETTE)]
        dash = "" if i < len(PALETTE) else ' stroke-dasharray="6 3"'
        text = (f"{r.candidate.key}: {r.goodput_rps or 0.0:.2f} req/s at {r.best_concurrency}"
                f"{', bound by ' + r.bound if r.bound else ''}{'  (chosen)' if chosen else ''}")
        out.append(f'<line x1="{MARGIN_L}" x2="{MARGIN_L + 28}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" '
                   f'stroke-width="{3.5 if chosen else 1.6}"{dash}/>')
        weight = ' font-weight="bold"' if chosen else ""
        out.append(f'<text x="{MARGIN_L + 36}" y="{y}"{weight}>{escape(text)}</text>')
    if len(drawn) > MAX_LEGEND_ROWS:
        y = LEGEND_Y + (MAX_LEGEND_ROWS + 1) * LEGEND_ROW - 4
        out.append(f'<text x="{MARGIN_L + 36}" y="{y}" class="sub">and {len(drawn) - MAX_LEGEND_ROWS} more '
                   "(their points carry their keys)</text>")
    out.append("</g>")
    return out


def write_svg(path: Path, text: str) -> None:
    """Write as every file qwenops writes (qwenops.atomicfile): whole or not at all, never through a
    symlink, so a reader never sees half a chart and a failed write leaves the old file as it was."""
    from qwenops.atomicfile import write_atomic

    write_atomic(path, text, mode=0o644)


def write_plot(result: TuneResult, path: Path) -> None:
    write_svg(path, render_svg(result))


def load_result(path: Path) -> TuneResult:
    """A TuneResult from `qwenops tune --json`'s envelope (or its bare data)."""
    import json

    document = json.loads(path.read_text(encoding="utf-8"))
    data = document.get("data", document) if isinstance(document, dict) else document
    return TuneResult.model_validate(data)


def _say(text: str) -> None:
    from qwenops.untrusted import printable

    print(printable(text), file=sys.stderr)  # paths and exceptions are the user's text: no control sequences


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        _say("usage: python -m qwenops.tune.plot RESULT.json OUT.svg  (RESULT.json: `qwenops tune --json`'s "
              "output)")
        return 2
    try:
        result = load_result(Path(args[0]))
    except (OSError, ValueError, RecursionError) as exc:
        _say(f"error: {args[0]}: not a `qwenops tune --json` result: {(str(exc).splitlines() or [''])[0]}")
        return 2
    if result.plan_only:
        _say(f"error: {args[0]}: a --plan-only result measured nothing to draw")
        return 2
    try:
        write_plot(result, Path(args[1]))
    except OSError as exc:
        _say(f"error: {args[1]}: cannot write: {exc.strerror or exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
