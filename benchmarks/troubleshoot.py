"""`qwenops troubleshoot --log` on a big log, side by side with `grep -E` over the same patterns (the floor).

    python benchmarks/troubleshoot.py [--mb 200] [--runs 3]

The log is built from real lines (tests/data/logs): a healthy boot, then request and throughput
lines repeated to the size asked for, with one real failure near the end. Both tools read the same
file in the same rounds, interleaved; the peak memory is the child's maximum RSS.
Goals: qwenops within 3x of grep's time; peak memory under 100 MB whatever the log size.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / "tests" / "data" / "logs"
GOAL_RATIO = 3.0
GOAL_PEAK_MB = 100.0
# The phrases the classifier keys on, as grep -E alternatives (a fair floor: grep also reads every byte).
GREP_PATTERNS = [
    "max seq len", "No available memory for the cache blocks", "Free memory on device", "Error in memory profiling",
    "Failed to load model", "capture_model", "Error 804", "driver on your system is too old",
    "CUDA driver version is insufficient", "no kernel image", "address already in use", "Address already in use",
    "Invalid repository ID", "Repository Not Found", "not a valid model identifier", "gated repo",
    "unrecognized arguments", "User-specified max_model_len", "validation error", "maximum context length",
    "Error in preprocessing", "is preempted by", "shared memory broadcast block", "NCCL", "EngineDeadError",
    "Engine core initialization failed", "EngineCore encountered an issue", "died unexpectedly",
    "CUDA out of memory", "OutOfMemoryError", "Traceback", "File \"", "Application startup complete",
    "Loading weights", "Model loading took", "KV cache", "Capturing", "Received request", "INFO: ",
]


def build_log(path: Path, megabytes: int) -> None:
    boot = (LOGS / "vllm_cpu_boot.log").read_bytes()
    failure = (LOGS / "public" / "03_kv_cache_no_blocks.log").read_bytes()
    body = b"".join(
        b'(APIServer pid=1) INFO:     127.0.0.1:%d - "POST /v1/chat/completions HTTP/1.1" 200 OK\n' % (40000 + i)
        + b"(APIServer pid=1) INFO 11-28 07:00:%02d [loggers.py:257] Engine 000: Avg prompt throughput: 12.3 "
          b"tokens/s, Avg generation throughput: 45.6 tokens/s, Running: 3 reqs, Waiting: 0 reqs, "
          b"GPU KV cache usage: 4.2%%, Prefix cache hit rate: 0.0%%\n" % (i % 60)
        for i in range(1000))
    target = megabytes * 1024 * 1024
    with path.open("wb") as out:
        out.write(boot)
        written = len(boot)
        while written < target:
            out.write(body)
            written += len(body)
        # A restart after hours of service, and this boot's real failure.
        out.write(b"(APIServer pid=2) INFO 11-28 09:00:00 [api_server.py:1] vLLM API server version 0.11.0\n")
        out.write(failure)


def timed(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, the child's peak RSS in MB, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode not in (0, 1):
        raise SystemExit(f"{argv[:3]} failed ({done.returncode}): {done.stderr[-500:]}")
    # ru_maxrss of all children so far is a running maximum; grep runs first in each round and is tiny.
    return elapsed, max(peak, before) / 1024, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "big.log"
        patterns = Path(tmp) / "patterns.txt"
        patterns.write_text("\n".join(GREP_PATTERNS) + "\n")
        build_log(log, args.mb)
        size_mb = log.stat().st_size / 1024 / 1024
        grep = ["grep", "-c", "-E", "-f", str(patterns), str(log)]
        qwenops = [sys.executable, "-m", "qwenops", "troubleshoot", "--log", str(log), "--json"]
        grep_s, ours_s, ours_peak = [], [], 0.0
        for _ in range(args.runs):
            elapsed, _, _ = timed(grep)
            grep_s.append(elapsed)
            elapsed, peak, out = timed(qwenops)
            ours_s.append(elapsed)
            ours_peak = max(ours_peak, peak)
        named = '"kv_cache_no_blocks"' in out
    g, q = statistics.median(grep_s), statistics.median(ours_s)
    print(f"troubleshoot on a {size_mb:.0f} MB log, {args.runs} interleaved runs, medians")
    print(f"{'tool':32} {'median s':>9} {'MB/s':>8} {'ratio':>7}")
    print(f"{'grep -c -E -f (same phrases)':32} {g:9.2f} {size_mb / g:8.0f} {1.0:7.2f}")
    print(f"{'qwenops troubleshoot --log':32} {q:9.2f} {size_mb / q:8.0f} {q / g:7.2f}")
    print(f"peak memory of qwenops: {ours_peak:.0f} MB (goal < {GOAL_PEAK_MB:.0f}); failure named: {named}")
    met = q / g <= GOAL_RATIO and ours_peak < GOAL_PEAK_MB and named
    print(f"goal: within {GOAL_RATIO:g}x of grep and under {GOAL_PEAK_MB:.0f} MB: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
