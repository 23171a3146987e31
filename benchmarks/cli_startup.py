"""CLI start-up: median wall time of qwenops commands vs `python -c pass`, measured side by side.

    python benchmarks/cli_startup.py [--runs 21]

Runs are interleaved (one of each command per round) so machine noise hits all of them alike.
Goal: every pure command answers in <= 0.3 s median on a 2-core machine, with no cache of any kind
(for scale: vLLM's own `--help` takes ~17 s there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 0.3


def qwenops_cmd() -> list[str]:
    script = Path(sys.executable).parent / "qwenops"
    if script.exists():
        return [str(script)]
    found = shutil.which("qwenops")
    return [found] if found else [sys.executable, "-m", "qwenops"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()

    q = qwenops_cmd()
    commands = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("qwenops --help", [*q, "--help"]),
        ("qwenops profiles list", [*q, "profiles", "list"]),
        ("qwenops render flags --profile 4090d", [*q, "render", "flags", "--profile", "4090d"]),
    ]
    with tempfile.TemporaryDirectory() as state_dir:
        env = {**os.environ, "NO_COLOR": "1", "QWENOPS_STATE_DIR": state_dir}
        times: dict[str, list[float]] = {name: [] for name, _ in commands}
        for _ in range(args.runs):
            for name, argv in commands:
                start = time.perf_counter()
                subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
                times[name].append(time.perf_counter() - start)

    baseline = statistics.median(times["python -c pass"])
    print(f"CLI start-up, {args.runs} interleaved runs each, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'command':46} {'median s':>9} {'p90 s':>7} {'x python':>9} {'goal':>8}")
    failed = False
    for name, samples in times.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        verdict = "" if name.startswith("python") else ("ok" if median <= GOAL_S else "MISSED")
        failed |= verdict == "MISSED"
        print(f"{name:46} {median:9.3f} {p90:7.3f} {median / baseline:9.1f} {verdict:>8}")
    print(f"goal: each qwenops command <= {GOAL_S:.2f} s median, no cache")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
