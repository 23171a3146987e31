"""`qwenops tune` against vLLM's own sweep (`vllm bench sweep serve`) on the same grid, on the tiny CPU model.

    python benchmarks/tune.py [--port 18450] [--state-dir /tmp/qwenops-bench-tune]

Grid: max_num_seqs {1, 2, 4} x max_model_len {256, 8192} (max_num_batched_tokens 512); the workload is
synthetic, 32 prompt + 16 output tokens (ignore_eos); SLO TTFT <= 500 ms, TPOT <= 50 ms; concurrency 1, 2, 4.
vLLM's sweep starts every combination (8192 exceeds the model's 4096-token context: vLLM refuses those at
start-up) and runs every concurrency for each; qwenops prunes with the planner and stops climbing where
goodput falls. Afterwards each tool's pick is served again and measured the same way for both: `vllm bench
serve` at concurrency 1, 2 and 4 (64 prompts each), the best request goodput (vLLM's --goodput, DistServe's
definition) is the pick's score. Goal (issue 13): the same or a better pick in at most half the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # measure this checkout's qwenops, not whichever is installed

SEQS = (1, 2, 4)
LENS = (256, 8192)
BATCHED = 512
PROMPT, OUTPUT = 32, 16
SLO_TTFT_MS, SLO_TPOT_MS = 500, 50
CONCURRENCY = (1, 2, 4)
SWEEP_PROMPTS = 16  # per concurrency, for vLLM's sweep: what qwenops tune sends per level by default
REMEASURE_PROMPTS = 64  # per concurrency, when both picks are scored again
VLLM_CLI = [sys.executable, str(REPO / "benchmarks" / "vllm_cli.py")]


@dataclass(frozen=True)
class Sweep:
    """One tool's sweep of the grid: its wall time, server starts and pick (max_num_seqs, max_model_len)."""

    wall_s: float
    starts: int
    pick: tuple[int, int] | None
    rc: int
    measured_rows: int | None = None  # vLLM's sweep: the runs it recorded


def bench_cmd(port: int, model_dir: Path, prompts: int) -> list[str]:
    return [*VLLM_CLI, "bench", "serve", "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
            "--base-url", f"http://127.0.0.1:{port}", "--model", "Qwen3-14B", "--tokenizer", str(model_dir),
            "--dataset-name", "random", "--random-input-len", str(PROMPT), "--random-output-len", str(OUTPUT),
            "--ignore-eos", "--num-prompts", str(prompts), "--goodput", f"ttft:{SLO_TTFT_MS}", f"tpot:{SLO_TPOT_MS}"]


def run_vllm_sweep(port: int, model_dir: Path, work: Path) -> Sweep:
    serve = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
             "--served-model-name", "Qwen3-14B", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
             "--max-num-batched-tokens", str(BATCHED)]
    serve_params = work / "serve_params.json"
    serve_params.write_text(json.dumps([{"max_num_seqs": s, "max_model_len": n} for s in SEQS for n in LENS]))
    bench_params = work / "bench_params.json"
    bench_params.write_text(json.dumps([{"max_concurrency": c} for c in CONCURRENCY]))
    argv = [*VLLM_CLI, "bench", "sweep", "serve", "--serve-cmd", shlex.join(serve),
            "--bench-cmd", shlex.join(bench_cmd(port, model_dir, SWEEP_PROMPTS)), "--after-bench-cmd", "true",
            "--serve-params", str(serve_params), "--bench-params", str(bench_params), "--num-runs", "1",
            "--continue-on-error", "--server-ready-timeout", "300", "-o", str(work / "vllm"), "-e", "sweep"]
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
                          check=False)
    wall = time.monotonic() - began
    (work / "vllm-sweep.log").write_text(done.stdout + done.stderr)
    rows = []
    for path in (work / "vllm" / "sweep").glob("*/run=0.json"):
        data = json.loads(path.read_text())
        rows.append(data)
    best = max(rows, key=lambda r: r.get("request_goodput") or 0.0, default=None)
    pick = None if best is None else (int(best["max_num_seqs"]), int(best["max_model_len"]))
    return Sweep(wall_s=wall, starts=len(SEQS) * len(LENS), pick=pick, rc=done.returncode, measured_rows=len(rows))


def run_qwenops(port: int, state_dir: Path) -> Sweep:
    argv = [sys.executable, "-m", "qwenops", "tune", "--port", str(port), "--slo-ttft-ms", str(SLO_TTFT_MS),
            "--slo-tpot-ms", str(SLO_TPOT_MS), "--prompt-tokens", str(PROMPT), "--output-tokens", str(OUTPUT),
            "--max-num-seqs", ",".join(map(str, SEQS)), "--max-model-len", ",".join(map(str, LENS)),
            "--max-num-batched-tokens", str(BATCHED), "--max-concurrency", str(max(CONCURRENCY)),
            "--budget-min", "15", "--json"]
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False,
                          env={**os.environ, "QWENOPS_STATE_DIR": str(state_dir)})
    wall = time.monotonic() - began
    data = json.loads(done.stdout)["data"]
    chosen = data["chosen"]
    pick = None if chosen is None else (int(chosen["max_num_seqs"]), int(chosen["max_model_len"]))
    return Sweep(wall_s=wall, starts=int(data["server_starts"]), pick=pick, rc=done.returncode)


def remeasure(pick: tuple[int, int], port: int, model_dir: Path, state_dir: Path) -> float:
    """Serve PICK under qwenops' supervisor and score it with `vllm bench serve`: the best request goodput
    over concurrency 1, 2, 4 (REMEASURE_PROMPTS each)."""
    os.environ["QWENOPS_STATE_DIR"] = str(state_dir)
    from qwenops.tune.launch import ServedCandidate, candidate_plan
    from qwenops.tune.results import Candidate

    candidate = Candidate(max_num_seqs=pick[0], max_num_batched_tokens=BATCHED, max_model_len=pick[1])
    plan = candidate_plan(None, candidate, overrides={"port": str(port)}, log_dir=state_dir / "logs",
                          startup_timeout_s=300)
    server = ServedCandidate(plan)
    best = 0.0
    try:
        if server.wait_ready() is not None:
            return 0.0
        with tempfile.TemporaryDirectory() as out:
            for concurrency in CONCURRENCY:
                name = f"c{concurrency}.json"
                subprocess.run([*bench_cmd(port, model_dir, REMEASURE_PROMPTS), "--max-concurrency", str(concurrency),
                                "--save-result", "--result-dir", out, "--result-filename", name],
                               capture_output=True, check=True)
                best = max(best, float(json.loads((Path(out) / name).read_text()).get("request_goodput") or 0.0))
    finally:
        server.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18450)
    parser.add_argument("--state-dir", type=Path, default=Path(tempfile.gettempdir()) / "qwenops-bench-tune")
    args = parser.parse_args()
    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    from qwenops.tinymodel import build_tiny_model

    model_dir = build_tiny_model(state_dir / "models" / "qwen3-tiny").path
    work = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    print(f"grid: max_num_seqs {SEQS} x max_model_len {LENS}; SLO TTFT <= {SLO_TTFT_MS} ms, TPOT <= {SLO_TPOT_MS} ms; "
          f"workload {PROMPT} + {OUTPUT} tokens; work dir {work}", flush=True)
    vllm = run_vllm_sweep(args.port, model_dir, work)
    print(f"vllm bench sweep serve: {vllm}", flush=True)
    ours = run_qwenops(args.port, state_dir)
    print(f"qwenops tune: {ours}", flush=True)
    # Both picks are scored twice, alternately, so drift on the shared machine hits both alike.
    picks = sorted({p for p in (vllm.pick, ours.pick) if p is not None})
    rounds: dict[tuple[int, int], list[float]] = {pick: [] for pick in picks}
    for _ in range(2):
        for pick in picks:
            rounds[pick].append(remeasure(pick, args.port, model_dir, state_dir))
            print(f"re-measured {pick}: {rounds[pick][-1]:.2f} req/s", flush=True)
    scores = {pick: sum(values) / len(values) for pick, values in rounds.items()}

    def score(result: Sweep) -> str:
        return "-" if result.pick is None else f"{scores[result.pick]:.2f} req/s"

    def name(result: Sweep) -> str:
        pick = result.pick
        return "none" if pick is None else f"max_num_seqs {pick[0]}, max_model_len {pick[1]}"

    print()
    print(f"{'':34} {'vllm bench sweep serve':>26} {'qwenops tune':>26}")
    print(f"{'wall time':34} {vllm.wall_s:>25.0f}s {ours.wall_s:>25.0f}s")
    print(f"{'server starts':34} {vllm.starts:>26} {ours.starts:>26}")
    print(f"{'pick':34} {name(vllm):>26} {name(ours):>26}")
    print(f"{'goodput of the pick (re-measured)':34} {score(vllm):>26} {score(ours):>26}")
    print(f"vllm bench sweep serve exit status {vllm.rc} ({vllm.measured_rows} runs recorded)")
    print(f"wall time ratio qwenops / vllm: {ours.wall_s / vllm.wall_s:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
