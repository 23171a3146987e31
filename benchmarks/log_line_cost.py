"""What one hostile log line costs: every regular expression the log reader, the classifier and serve's boot log
hold, searched over lines made of one character class, at two lengths side by side; and serve's line reader on
server lines of 64 KiB.

    python benchmarks/log_line_cost.py [--chars 4096] [--runs 3]

A pattern that starts with a repeated class (`\\s*X`, `[\\d.]+ GiB`) and is searched, not matched, is tried from
every position of a long run of that class: its time grows with the square of the line (audit 10 found five,
30 s for a 820 KB log). Lines are bounded in characters (4,096 for troubleshoot), so the goal is on growth: at 4x
the length, every pattern's time grows at most 8x (linear is 4x, quadratic 16x), and no pattern takes more than
5 ms on a line of the longest length; serve reads a 64 KiB line in under 50 ms. The times are the best of RUNS.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODULES = ("qwenops.vllmlog.lines", "qwenops.vllmlog.classify", "qwenops.supervisor.bootlog")
# Patterns used with .match (anchored at the line's start: one attempt, linear), not searched.
MATCHED = {"bootlog._ENGINE_DEATH", "lines._NAME_REST"}
FILLS = {"spaces": " ", "tabs": "\t", "digits": "1", "digits and dots": "0.", "letters": "a", "words": "ab ",
         "underscores": "_", "word and dot": "a.", "box frame": "\u2502", "brackets": "[", "dashes": "-",
         "colons": ":", "parens": "(", "quotes": "'", "commas": ",", "key=value": "x=1 ", "slashes": "/",
         "figures": "1.0 GiB ", "capitals": "A", "percents": "1%"}
TAILS = ("", "x", "\u2502", " GiB", "]", ":")
GOAL_GROWTH = 8.0
GOAL_MS = 5.0
GOAL_SERVE_MS = 50.0


def patterns() -> dict[str, re.Pattern[str]]:
    """Every compiled pattern the modules hold, also inside tuples, dicts and rules (dataclasses), by a name."""
    found: dict[int, tuple[str, re.Pattern[str]]] = {}

    def walk(obj: object, name: str, depth: int = 0) -> None:
        if depth > 4:
            return
        if isinstance(obj, re.Pattern) and isinstance(obj.pattern, str):
            found.setdefault(id(obj), (name, obj))
        elif isinstance(obj, (list, tuple)):
            for i, item in enumerate(obj):
                walk(item, f"{name}[{i}]", depth + 1)
        elif isinstance(obj, dict):
            for key, item in obj.items():
                walk(item, f"{name}[{key!r}]", depth + 1)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for field in dataclasses.fields(obj):
                walk(getattr(obj, field.name), f"{name}.{field.name}", depth + 1)

    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            walk(value, f"{module_name.rsplit('.', 1)[-1]}.{name}")
    return dict(found.values())


def worst(pattern: re.Pattern[str], chars: int, runs: int, anchored: bool) -> tuple[float, str]:
    """The slowest (best-of-RUNS seconds, line) over every fill and tail at CHARS characters."""
    use = pattern.match if anchored else pattern.search
    slowest = (0.0, "")
    for fill_name, fill in FILLS.items():
        for tail in TAILS:
            line = (fill * (chars // len(fill) + 1))[:chars] + tail
            best = min(_timed(use, line) for _ in range(runs))
            if best > slowest[0]:
                slowest = (best, f"{fill_name} + {tail!r}")
    return slowest


def _timed(use: object, line: str) -> float:
    start = time.perf_counter()
    use(line)  # type: ignore[operator]
    return time.perf_counter() - start


def serve_line_ms(chars: int, runs: int) -> tuple[float, str]:
    from qwenops.supervisor.bootlog import BootLog

    slowest = (0.0, "")
    for fill_name, fill in FILLS.items():
        for tail in TAILS:
            line = (fill * (chars // len(fill) + 1))[:chars] + tail
            times = []
            for _ in range(runs):
                boot = BootLog()
                boot.serving = True
                start = time.perf_counter()
                boot.feed(line)
                times.append(time.perf_counter() - start)
            if min(times) > slowest[0]:
                slowest = (min(times), f"{fill_name} + {tail!r}")
    return slowest[0] * 1000, slowest[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=4096, help="the longer line's length (the shorter: a quarter)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name, pattern in sorted(patterns().items()):
        anchored = name in MATCHED
        short, _ = worst(pattern, args.chars // 4, args.runs, anchored)
        long, line = worst(pattern, args.chars, args.runs, anchored)
        rows.append((long, long / max(short, 1e-6), name, line))
    rows.sort(reverse=True)
    print(f"{len(rows)} patterns; the ten slowest at {args.chars:,} characters (best of {args.runs}):")
    print(f"{'ms':>8}  {'growth x4':>9}  pattern (the line)")
    for long, growth, name, line in rows[:10]:
        print(f"{long * 1000:8.2f}  {growth:8.1f}x  {name} ({line})")
    # Growth is judged only where the time is measurable (above 0.2 ms): below it, timer noise is the ratio.
    grown = [(growth, name) for long, growth, name, _ in rows if long > 2e-4 and growth > GOAL_GROWTH]
    slow = [(long, name) for long, _, name, _ in rows if long * 1000 > GOAL_MS]
    from qwenops.vllmlog import classify

    if classify._REPORTED_ANY_RE2 is not None:  # the reporter's words on ASCII lines: RE2 first (classify._in_re2)
        re2_ms = worst(classify._REPORTED_ANY_RE2, args.chars, args.runs, False)[0] * 1000
        print(f"classify._REPORTED_ANY as RE2 reads it (ASCII lines; Python's `re` reads the rest): {re2_ms:.2f} ms")
    serve_ms, serve_line = serve_line_ms(64 * 1024, args.runs)
    print(f"serve's line reader on a 64 KiB line: {serve_ms:.1f} ms at worst ({serve_line})")
    met = not grown and not slow and serve_ms <= GOAL_SERVE_MS
    print(f"goal: growth <= {GOAL_GROWTH:g}x at 4x the length, <= {GOAL_MS:g} ms a pattern, serve <= "
          f"{GOAL_SERVE_MS:g} ms a line: {'met' if met else 'not met'}")
    for growth, name in grown:
        print(f"  grows {growth:.1f}x: {name}")
    for took, name in slow:
        print(f"  {took * 1000:.1f} ms: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
