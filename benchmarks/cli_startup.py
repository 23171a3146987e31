"""CLI start-up: median wall time of qwenops commands vs `python -c pass`, measured side by side.

    python benchmarks/cli_startup.py [--runs 21] [--before DIR]

Runs are interleaved (one of each command per round) so machine noise hits all of them alike.
--before DIR also times the same commands from another source tree (e.g. `git archive <commit> qwenops
configs | tar -x -C DIR`), in the same rounds, for a before/after table from one run.
Bytecode: the runs may write and read .pyc files, in a temporary PYTHONPYCACHEPREFIX (one untimed warm-up
round fills it), as an installed wheel's are compiled at install; PYTHONDONTWRITEBYTECODE=1 in the
environment would otherwise make every run compile all of qwenops' source. --no-bytecode measures that.
Goal: every pure command answers in <= 0.2 s median on a 2-core machine, with no cache of any kind
(for scale: vLLM's own `--help` takes ~17 s there).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 0.2
PROBE = Path(__file__).resolve().parents[1] / "tests" / "data" / "probes" / "rtx4090d-cuda124.json"


def qwenops_cmd() -> list[str]:
    script = Path(sys.executable).parent / "qwenops"
    if script.exists():
        return [str(script)]
    found = shutil.which("qwenops")
    return [found] if found else [sys.executable, "-m", "qwenops"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--no-bytecode", action="store_true", help="compile the source on every run (no .pyc)")
    parser.add_argument("--before", type=Path, help="a source tree (holding qwenops/) to time beside this one")
    args = parser.parse_args()

    # Beside another tree, both run as `python -m qwenops` from their own tree, so only the code differs.
    here = str(Path(__file__).resolve().parents[1])
    q = qwenops_cmd() if args.before is None else [sys.executable, "-m", "qwenops"]
    pure = [
        ("--help", ["--help"]),
        ("profiles list", ["profiles", "list"]),
        ("render flags --profile 4090d", ["render", "flags", "--profile", "4090d"]),
        ("render flags --profile cpu-tiny", ["render", "flags", "--profile", "cpu-tiny"]),
        # A deployment target: it reads the profile's supervise: section (SupervisorOptions, a pydantic model).
        ("render systemd --profile 4090d", ["render", "systemd", "--profile", "4090d"]),
        ("plan --profile 4090d --probe-file", ["plan", "--profile", "4090d", "--probe-file", str(PROBE)]),
    ]
    commands: list[tuple[str, list[str], str | None]] = [("python -c pass", [sys.executable, "-c", "pass"], None)]
    for name, argv in pure:
        if args.before is not None:
            commands.append((f"before: qwenops {name}", [sys.executable, "-m", "qwenops", *argv],
                             str(args.before.resolve())))
        commands.append((f"qwenops {name}", [*q, *argv], None if args.before is None else here))
    with tempfile.TemporaryDirectory() as state_dir:
        env = {**os.environ, "NO_COLOR": "1", "QWENOPS_STATE_DIR": state_dir}
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(state_dir) / "pycache")
            for _, argv, tree in commands:  # the warm-up round: compiles once, untimed
                subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tree, check=False,
                               env=env if tree is None else {**env, "PYTHONPATH": tree})
        times: dict[str, list[float]] = {name: [] for name, _, _ in commands}
        # CPU time (user + system) of each run too: on a loaded machine wall time is mostly waiting for a
        # CPU, and the CPU time a command needs is what it can change.
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in commands}
        for _ in range(args.runs):
            for name, argv, tree in commands:
                run_env = env if tree is None else {**env, "PYTHONPATH": tree}
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                # plan exits 1 when the profile does not fit the probe's GPU: a verdict, not a failure
                done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=run_env,
                                      cwd=tree, check=False)
                times[name].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime)
                if done.returncode not in (0, 1):
                    raise SystemExit(f"{name} exited {done.returncode}")

    baseline = statistics.median(times["python -c pass"])
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"CLI start-up, {args.runs} interleaved runs each, {os.cpu_count()} CPUs, load average {load} (at the end), "
          f"Python {sys.version.split()[0]}, {'no .pyc' if args.no_bytecode else 'with .pyc'}")
    print(f"{'command':50} {'median s':>9} {'p90 s':>7} {'cpu s':>7} {'x python':>9} {'goal':>8}")
    failed = False
    for name, samples in times.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        verdict = "" if name.startswith(("python", "before")) else ("ok" if median <= GOAL_S else "MISSED")
        failed |= verdict == "MISSED"
        cpu_s = statistics.median(cpu[name])
        print(f"{name:50} {median:9.3f} {p90:7.3f} {cpu_s:7.3f} {median / baseline:9.1f} {verdict:>8}")
    print(f"goal: each qwenops command <= {GOAL_S:.2f} s median, no cache")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
