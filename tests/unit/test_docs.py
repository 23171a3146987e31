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


def _layout_block() -> str:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout", 1)[1]
    return FENCE.search(section).group(0)  # type: ignore[union-attr]


def _layout_entries() -> dict[str, str]:
    """The layout's entries, `cli/views/` -> its text (continuation lines included)."""
    entries: dict[str, str] = {}
    current = ""
    for line in _layout_block().splitlines()[2:-1]:  # the fence and `qwenops/`
        if line.startswith("  ") and not line.startswith("   "):
            current = line.split()[0]
            entries[current] = line
        elif current:
            entries[current] += " " + line.strip()
    return entries


@pytest.mark.parametrize(
    "module",
    sorted(str(p.relative_to(REPO / "qwenops")) for p in (REPO / "qwenops").rglob("*.py")
           if p.name not in ("__init__.py", "__main__.py")),
)
def test_the_architecture_layout_names_every_module(module: str) -> None:
    """A newcomer finds every module in docs/architecture.md's layout, in its own package's entry (cli/'s
    commands excepted: the layout names them as one per command)."""
    entries = _layout_entries()
    path = Path(module)
    entry = f"{path.parent.as_posix()}/" if len(path.parts) > 1 else path.name
    assert entry in entries, f"docs/architecture.md's layout has no entry {entry}"
    if path.parts[:2] == ("cli", path.name) and path.name not in ("output.py", "_common.py", "_lazy.py"):
        return
    assert path.name in entries[entry], f"docs/architecture.md's {entry} entry does not name {path.name}"



@pytest.mark.parametrize(
    "package",
    sorted(str(p.parent.relative_to(REPO / "qwenops")) for p in (REPO / "qwenops").rglob("__init__.py")
           if p.parent != REPO / "qwenops"),
)
def test_the_architecture_layout_names_every_package(package: str) -> None:
    """A package with no module but its __init__.py still has its entry in the layout."""
    assert f"{package}/" in _layout_entries(), f"docs/architecture.md's layout has no entry {package}/"


# The package of each command's core, qwenops/<package>/run.py (docs/architecture.md's Layout: "One home per
# command"); the exceptions the Layout names, with where their core is.
COMMAND_CORES = {"doctor": "doctor", "install": "install", "uninstall": "install", "plan": "plan",
                 "profiles": "profiles", "render": "render", "serve": "serve", "smoke-stream": "smoke",
                 "status": "status", "troubleshoot": "troubleshoot", "tune": "tune", "gateway": "gateway"}
CORE_EXCEPTIONS = {"model": "qwenops.tinymodel"}


@pytest.mark.parametrize("command", sorted({*COMMAND_CORES, *CORE_EXCEPTIONS}))
def test_each_command_calls_its_core_in_its_own_package_and_draws_no_view(command: str) -> None:
    """The command module calls qwenops/<package>/run.py and keeps no text view: rich and the tables are
    cli/views/<command>.py's."""
    from qwenops.cli import COMMANDS

    assert set(COMMANDS) == {*COMMAND_CORES, *CORE_EXCEPTIONS}, "a new command: name its core package here"
    module = COMMANDS[command].partition(":")[0]
    source = (REPO / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
    if command in COMMAND_CORES:
        package = COMMAND_CORES[command]
        assert (REPO / "qwenops" / package / "run.py").is_file()
        core = f"qwenops.{package}.run"
    else:
        core = CORE_EXCEPTIONS[command]
    assert re.search(rf"^\s*from {re.escape(core)} import ", source, re.MULTILINE), f"{module} does not call {core}"
    for drawing in ("from rich", "import rich", "views.tables", "RenderableType", "def _view"):
        assert drawing not in source, f"{module} draws its own view ({drawing}): move it to cli/views/"
    if command in COMMAND_CORES:
        entry = _layout_entries().get(f"{COMMAND_CORES[command]}/", "")
        assert "run.py" in entry, f"docs/architecture.md's layout does not name {COMMAND_CORES[command]}/run.py"


def test_the_readme_command_table_names_every_command_and_render_target() -> None:
    from qwenops.cli import COMMANDS
    from qwenops.render.run import DEPLOY_TARGETS

    table = [line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("| `qwenops ")]
    def first_cell(line: str) -> str:
        return re.split(r"(?<!\\)\|", line)[1]  # a cell may hold escaped pipes: `systemd\|env`

    named = " ".join(first_cell(line) for line in table)
    for command in COMMANDS:
        assert f"`qwenops {command}" in named, f"the README's command table misses `qwenops {command}`"
    render_rows = " ".join(first_cell(line) for line in table if line.startswith("| `qwenops render"))
    words = set(re.split(r"[\\|`\s]+", render_rows.replace("\\|", " ")))
    for target in DEPLOY_TARGETS:
        assert target in words, f"the README's command table misses `qwenops render {target}`"


def test_security_doc_lists_every_limit_on_untrusted_input() -> None:
    """docs/security.md's table names every limit qwenops/untrusted.py defines: a new limit is documented."""
    from qwenops import untrusted

    limits = [name for name in vars(untrusted) if name.isupper() and not name.startswith("_")
              and isinstance(getattr(untrusted, name), (int, float, str))]
    text = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    missing = [name for name in limits if name not in ("NAME_RULE", "KIB", "MIB", "GIB") and f"`{name}`" not in text]
    assert limits and missing == [], f"docs/security.md does not list {missing}"
