"""The README is the front door and docs/ holds the rest: links resolve, contracts stay documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qwenops.errors import ExitCode
from qwenops.vllmlog import classify

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _prose(path: Path) -> str:
    """The page without its code blocks, where `[x](y)` is code, not a link."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in _prose(path).splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor}")
    assert broken == [], f"{_rel(page)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_citation_of_files_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert "ARCHITECTURE.md" not in text


def test_readme_stays_a_front_door() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    # One screen per command at most: the gateway's protocol and the soak table live here by request
    # (issues 10 and 12), every detail behind them in docs/.
    assert len(readme.splitlines()) <= 300
    for doc in DOCS:
        assert f"(docs/{doc.name}" in readme, f"README does not link {doc.name}"


def test_readme_lists_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| ", readme, re.MULTILINE), f"exit code {int(code)} missing"


def test_architecture_names_every_category_the_classifier_emits() -> None:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    categories = {rule.category for rule in classify.RULES} | set(classify._OOM_TITLES)
    categories.add(classify._MODEL_NOT_GENERATIVE.category)
    for module in ("qwenops/vllmlog/classify.py", "qwenops/troubleshoot/rules.py"):  # findings built in place
        categories |= set(re.findall(r'Finding\(\s*"(\w+)"', (REPO / module).read_text(encoding="utf-8")))
    assert {"engine_stalled", "kv_cache_full", "high_latency_cpu", "model_not_generative"} <= categories
    missing = sorted(c for c in categories if f"`{c}`" not in text)
    assert missing == [], f"docs/architecture.md does not describe {missing}"
