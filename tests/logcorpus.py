"""The real failure logs under tests/data/logs and their split into a dev half and a frozen test half.

Every collection with an index.json (collected/, public/, corpus/*/) is read; each log is labelled with
the root cause its thread established. The halves are split by thread, never by file, so two excerpts
of one thread never sit on both sides: the collections the rules were written from before the split
existed (collected/, public/) and the dev-only collections gathered after it (corpus/dev2/ to
corpus/dev5/) are dev; a corpus thread's SHA-256 decides the rest. The test half is fixed in
tests/data/logs/corpus/SPLIT.json. Read by troubleshoot's tests (dev half only) and by
benchmarks/troubleshoot_accuracy.py (both halves); benchmarks may import from tests/, never the reverse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

LOGS = Path(__file__).resolve().parent / "data" / "logs"
MANIFEST = LOGS / "corpus" / "SPLIT.json"
# Collections the rules were written from, before the split existed, and collections gathered later for
# rule writers alone (corpus/dev2 to corpus/dev5: new threads found after the split was frozen): always dev.
WRITTEN_FROM = ("collected", "public", "corpus/dev2", "corpus/dev3", "corpus/dev4", "corpus/dev5", "corpus/dev6",
                "corpus/dev7", "corpus/dev8", "corpus/dev9", "corpus/dev10",
                "corpus/dev11", "corpus/dev12", "corpus/dev13", "corpus/dev14", "corpus/dev15", "corpus/dev16",
                "corpus/dev17", "corpus/dev18", "corpus/dev19", "corpus/dev20", "corpus/dev21", "corpus/dev22",
                "corpus/dev23")


@dataclass(frozen=True)
class Case:
    path: Path
    collection: str
    thread: str
    category: str


def thread_of(entry: dict[str, object]) -> str:
    """The thread a log came from (OWNER/REPO#N): the split's unit."""
    if isinstance(entry.get("thread"), str) and entry["thread"]:
        return str(entry["thread"])
    source = str(entry.get("source", ""))
    parts = source.split("github.com/", 1)[-1].split("#", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[2] in ("issues", "pull", "discussions"):
        return f"{parts[0]}/{parts[1]}#{parts[3]}"
    return source or "unknown"


def load_cases() -> list[Case]:
    cases = []
    for index in sorted(LOGS.glob("**/index.json")):
        collection = str(index.parent.relative_to(LOGS))
        for entry in json.loads(index.read_text(encoding="utf-8")):
            path = index.parent / entry["file"]
            if path.is_file():
                cases.append(Case(path, collection, thread_of(entry), str(entry["category"])))
    return cases


def in_test_half(case: Case) -> bool:
    """The split rule, fixed before any rule was written from the corpus: a thread's SHA-256 decides."""
    if any(case.collection == name or case.collection.startswith(f"{name}/") for name in WRITTEN_FROM):
        return False
    return hashlib.sha256(case.thread.encode()).digest()[0] % 2 == 1


def manifest_of(test: list[Case]) -> dict[str, object]:
    digest = hashlib.sha256()
    files = sorted(str(case.path.relative_to(LOGS)) for case in test)
    for name in files:
        digest.update(name.encode() + b"\0" + (LOGS / name).read_bytes() + b"\0")
    return {"rule": "corpus threads whose sha256(OWNER/REPO#N) first byte is odd; collected/ and public/ are dev",
            "files": files, "threads": len({case.thread for case in test}), "sha256": digest.hexdigest()}
