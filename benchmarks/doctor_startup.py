"""How long `qwenops doctor` takes on a host without a GPU, next to the floor it cannot beat.

Goal: `doctor` (no GPU) <= 0.5 s median, end to end as a user runs it: a fresh interpreter,
the probe (NVML init failing, psutil, disk, port, package metadata), every check, the JSON out.
Each command runs interleaved, N rounds, so machine load hits all rows alike.

    python benchmarks/doctor_startup.py [ROUNDS]
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
COMMANDS: dict[str, list[str]] = {
    "python -c pass (floor)": [PY, "-c", "pass"],
    "qwenops --help": [PY, "-m", "qwenops", "--help"],
    # Loads settings and a profile (pydantic, PyYAML) like doctor does, without probing or checking.
    "qwenops profiles show 4090d --json": [PY, "-m", "qwenops", "profiles", "show", "4090d", "--json"],
    "qwenops doctor --profile 4090d --json": [PY, "-m", "qwenops", "doctor", "--profile", "4090d", "--json"],
    "qwenops plan --profile 4090d --json": [PY, "-m", "qwenops", "plan", "--profile", "4090d", "--json"],
}
HEAVY = ("torch", "vllm", "transformers", "fastapi")


def heavy_modules_loaded() -> list[str]:
    probe = ("import sys\nfrom qwenops.cli import cli\ntry:\n"
             "    cli.main(['doctor', '--profile', '4090d', '--json'], standalone_mode=False)\n"
             "except SystemExit:\n    pass\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([PY, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False)
    last = (done.stderr.strip().splitlines() or [""])[-1]
    return [m for m in last.split(",") if m]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(rounds: int) -> int:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    # CPU seconds next to wall seconds: on a shared 2-core box wall time mostly measures the
    # neighbours, while the child's user+sys time is what the command itself costs.
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, argv in COMMANDS.items():
            start, start_cpu = time.perf_counter(), _child_cpu()
            subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_child_cpu() - start_cpu)
    floor = statistics.median(times["python -c pass (floor)"])
    width = max(map(len, COMMANDS))
    print(f"{'command':<{width}}  {'median s':>8}  {'p90 s':>6}  {'cpu s':>6}  {'x floor':>7}   ({rounds} rounds)")
    for name, samples in times.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else median
        print(f"{name:<{width}}  {median:8.3f}  {p90:6.3f}  {statistics.median(cpu[name]):6.3f}  "
              f"{median / floor:7.1f}")
    doctor = statistics.median(times["qwenops doctor --profile 4090d --json"])
    heavy = heavy_modules_loaded()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\ndoctor median {doctor:.3f} s (goal <= 0.5 s); heavy modules imported: {heavy or 'none'}; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    return 0 if doctor <= 0.5 and not heavy else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15))
