"""How often `qwenops troubleshoot --log` names the root cause of a real failure log, on two halves.

    python benchmarks/troubleshoot_accuracy.py            # both halves, per category, confusion matrix
    python benchmarks/troubleshoot_accuracy.py --freeze   # write the frozen test half's manifest (once)
    python benchmarks/troubleshoot_accuracy.py --dev-only --show-misses dev   # what a rule writer runs

The corpus is every real log under tests/data/logs with an index.json (collected/, public/, corpus/*/),
each labelled with the root cause its thread established. The halves are split by thread, never by
file, so two excerpts of one thread never sit on both sides:
- dev: the logs the rules were written from (collected/, public/: they predate the split) and the
  corpus threads whose hash falls in the dev half;
- test: the other corpus threads, fixed in tests/data/logs/corpus/SPLIT.json with a hash of the file
  list and contents. Rules are never changed while looking at it; this script refuses to run when the
  manifest's hash does not match what is on disk (the half was edited) unless --freeze rewrites it.

A log is named right when the first finding's category is its root cause (top-1; a cause outside
troubleshoot's vocabulary, such as a broken install, is named right as `unclassified`); `top2` also counts
the second finding, for logs where two causes fit. A healthy log is right when no finding has severity
error. "Silent" counts failing logs that got no finding at all: troubleshoot must never say "no error
found" on a log that holds one. Goal (printed, not asserted): >= 90% top-1 on the test half and no
error finding on a healthy log.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # measure this checkout's qwenops, not whichever one is installed

from tests.logcorpus import LOGS, MANIFEST, Case, in_test_half, load_cases, manifest_of  # noqa: E402

GOAL_TOP1 = 0.90
# Names the corpus gives a cause where the classifier's vocabulary splits or names it differently.
ALIASES = {
    "high_latency": {"high_latency", "high_latency_cpu", "kv_cache_preemption", "kv_cache_full"},
    "bad_flag": {"bad_flag", "invalid_argument", "invalid_config"},
    "invalid_config": {"invalid_config", "invalid_argument", "bad_flag"},
}


VOCABULARY: set[str] = set()


def predict(path: Path) -> tuple[list[str], bool]:
    """The categories troubleshoot names, first to last, and whether any finding is an error."""
    from qwenops.troubleshoot.run import classify_source
    from qwenops.troubleshoot.sources import file_source

    findings, _read = classify_source(file_source(str(path)), {})
    return [f.category for f in findings], any(f.severity == "error" for f in findings)


def vocabulary() -> set[str]:
    """The categories troubleshoot names (docs/architecture.md's vocabulary table)."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8").split("### The vocabulary", 1)[1]
    return {line.split("`")[1] for line in text.split("\n## ", 1)[0].splitlines() if line.startswith("| `")}


def right(category: str, named: list[str], has_error: bool, top: int) -> bool:
    """A root cause outside troubleshoot's vocabulary (a broken install, a bad media URL) is named right
    as `unclassified`: the error line quoted, with what to look for, is the honest answer there."""
    if category == "healthy":
        return not has_error
    wanted = ALIASES.get(category, {category})
    if category not in VOCABULARY and not wanted & VOCABULARY:
        wanted = wanted | {"unclassified"}
    return bool(wanted & set(named[:top]))


def report(name: str, cases: list[Case], show_misses: bool) -> dict[str, float]:
    per: dict[str, Counter[str]] = defaultdict(Counter)
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    silent = 0
    misses = []
    for case in cases:
        named, has_error = predict(case.path)
        first = named[0] if named else "(none)"
        ok1, ok2 = right(case.category, named, has_error, 1), right(case.category, named, has_error, 2)
        per[case.category]["n"] += 1
        per[case.category]["top1"] += ok1
        per[case.category]["top2"] += ok2
        confusion[case.category]["ok" if ok1 else first] += 1
        if case.category != "healthy" and not named:
            silent += 1
        if not ok1:
            misses.append(f"  {case.path.relative_to(LOGS)}: want {case.category}, got {named or '(none)'}")
    n = len(cases)
    top1 = sum(c["top1"] for c in per.values())
    top2 = sum(c["top2"] for c in per.values())
    healthy_errors = per["healthy"]["n"] - per["healthy"]["top1"] if "healthy" in per else 0
    threads = len({case.thread for case in cases})
    print(f"== {name}: {n} logs from {threads} threads: top-1 {top1}/{n} ({top1 / max(n, 1):.0%}), "
          f"top-2 {top2}/{n} ({top2 / max(n, 1):.0%}); silent on a failing log: {silent}; "
          f"error findings on healthy logs: {healthy_errors}")
    print(f"   {'category':<26} {'logs':>5} {'top-1':>6} {'top-2':>6}   what the misses were named")
    for category in sorted(per):
        counts = per[category]
        wrong = ", ".join(f"{k} {v}" for k, v in confusion[category].most_common() if k != "ok")
        print(f"   {category:<26} {counts['n']:>5} {counts['top1']:>6} {counts['top2']:>6}   {wrong}")
    if show_misses:
        print("\n".join(misses))
    return {"top1": top1 / max(n, 1), "healthy_errors": healthy_errors, "silent": silent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--freeze", action="store_true", help="write the test half's manifest (once)")
    parser.add_argument("--show-misses", choices=("dev", "test"), help="list every miss of one half")
    parser.add_argument("--dev-only", action="store_true",
                        help="report the dev half alone (what a rule writer runs: the test half stays unseen)")
    args = parser.parse_args(argv)
    VOCABULARY.update(vocabulary())
    cases = load_cases()
    test = [case for case in cases if in_test_half(case)]
    dev = [case for case in cases if not in_test_half(case)]
    manifest = manifest_of(test)
    if args.freeze:
        MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        print(f"froze the test half: {len(test)} logs, {manifest['threads']} threads, sha256 {manifest['sha256']}")
        return 0
    if args.dev_only:
        report("dev half (rules may be written from it)", dev, args.show_misses == "dev")
        return 0
    frozen = json.loads(MANIFEST.read_text(encoding="utf-8")) if MANIFEST.is_file() else None
    if frozen is None or frozen["sha256"] != manifest["sha256"]:
        print(f"the test half differs from {MANIFEST.relative_to(REPO)}: it was edited, or never frozen",
              file=sys.stderr)
        return 2
    report("dev half (rules may be written from it)", dev, args.show_misses == "dev")
    scores = report("test half (frozen; never tuned to)", test, args.show_misses == "test")
    met = scores["top1"] >= GOAL_TOP1 and scores["healthy_errors"] == 0
    print(f"goal: >= {GOAL_TOP1:.0%} top-1 on the test half and no error finding on a healthy log: "
          f"{'met' if met else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
