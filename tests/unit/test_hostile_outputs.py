"""Hostile text on its way into what qwenops writes and reads back: a derived profile's comments, the JUnit
file a CI server parses, a JSON integer past Python's own bound, a log line nested past the parser's limit,
a forged state record, and a rejected value's length. Each is data in the output, or one bad-input line."""

from __future__ import annotations

import json
import re
import xml.dom.minidom
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.config.saved import derived_profile_text
from qwenops.errors import BadInputError
from qwenops.smoke.run import write_junit
from qwenops.supervisor.lifetime import read_last_fatal
from qwenops.tune.plot import write_svg
from qwenops.tune.workload import load_workload
from tests.unit.test_smoke import fixed_report

BREAKS = ["\n", "\r", "\r\n", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("line_break", BREAKS)
def test_a_line_break_in_a_comment_never_adds_a_key_to_a_derived_profile(line_break: str) -> None:
    """tune saves `Workload: PATH` in its profile's comment; a path can hold any character but NUL and `/`."""
    path = f"/tmp/wl/a{line_break}env:{line_break}  LD_PRELOAD: /tmp/evil.so{line_break}#.jsonl"
    text = derived_profile_text(extends="cpu-tiny", description="tuned", values={"max_num_seqs": 4},
                                comment=[f"Workload: {path}", "", "Evidence: \x1b[31mred\x1b[0m"])
    assert yaml.safe_load(text) == {"extends": "cpu-tiny", "description": "tuned", "max_num_seqs": 4}
    assert "LD_PRELOAD: /tmp/evil.so" in text.splitlines()[0]  # kept, as data, in its one comment line
    assert "\x1b" not in text


def test_the_junit_file_parses_whatever_the_server_said(tmp_path: Path) -> None:
    report = fixed_report()
    stream = report.streams[0]
    hostile = stream.checks[0].model_copy(update={
        "ok": False, "detail": "HTTP 400: bad \x01\x02\x1b[31mRED\x07 \ufffe \udc80 end"})
    report = report.model_copy(update={"streams": (stream.model_copy(update={"checks": (hostile, *stream.checks[1:])}),
                                                   *report.streams[1:])})
    path = tmp_path / "smoke.xml"
    write_junit(report, path)
    failure = xml.dom.minidom.parse(str(path)).getElementsByTagName("failure")[0]
    assert failure.getAttribute("message") == "HTTP 400: bad RED \ufffd \ufffd end"


@pytest.mark.parametrize("writer", ["junit", "plot"])
@pytest.mark.parametrize("planted", ["symlink", "fifo"])
def test_a_link_or_a_pipe_where_a_report_goes_is_refused_and_left_alone(writer: str, planted: str,
                                                                          tmp_path: Path) -> None:
    """smoke-stream --junit (a CI path, often in a shared directory) wrote through a planted link (audit 4), and
    `--junit /dev/null` run as root would have replaced the system's /dev/null with a file (audit 8)."""
    import os
    import stat

    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "report"
    if planted == "symlink":
        target.symlink_to(victim)
    else:
        os.mkfifo(target)
    with pytest.raises((BadInputError, OSError), match="symbolic link" if planted == "symlink" else "named pipe"):
        if writer == "junit":
            write_junit(fixed_report(), target)
        else:
            write_svg(target, "<svg/>")
    assert victim.read_text() == "precious"
    assert (target.is_symlink() if planted == "symlink" else stat.S_ISFIFO(os.lstat(target).st_mode))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "victim"]


def test_a_symlink_at_the_servers_log_is_replaced_not_written_through(tmp_path: Path) -> None:
    """serve appended its server's output (part of it a client's text) to whatever a link planted at
    state/logs/serve-NAME.log pointed to (audit 5)."""
    from qwenops.supervisor.process import LogFile

    victim = tmp_path / "victim"
    victim.write_text("ORIGINAL\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "serve-x.log").symlink_to(victim)
    logger = LogFile(logs / "serve-x.log").open_logger()
    logger.info("INFO: Started server process")
    for handler in logger.handlers:
        handler.close()
    assert victim.read_text() == "ORIGINAL\n"
    assert not (logs / "serve-x.log").is_symlink()
    assert (logs / "serve-x.log").read_text() == "INFO: Started server process\n"


def test_a_named_pipe_at_the_servers_log_is_refused_never_waited_on(tmp_path: Path) -> None:
    """A FIFO at state/logs/serve-NAME.log hung serve before it spawned anything (audit 9): the log writer refuses
    it at once, and serve refuses it before it starts (exit 2, one line)."""
    import os

    from click.testing import CliRunner

    from qwenops.cli import cli
    from qwenops.supervisor.process import LogFile

    logs = tmp_path / "logs"
    logs.mkdir()
    fifo = logs / "serve-cpu-tiny.log"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="named pipe, not a regular file"):
        LogFile(fifo).open_logger()
    result = CliRunner().invoke(cli, ["serve", "--port", "18399"], env={"QWENOPS_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert f"log_file: {fifo} is a named pipe, not a log file" in result.stderr and result.stderr.count("\n") == 1


def test_a_named_pipe_where_a_derived_profile_goes_is_bad_input_not_an_internal_error(tmp_path: Path) -> None:
    """auto-fit and tune save NAME-fitted / NAME-tuned over what is there: a FIFO there was exit 4 (audit 9)."""
    import os

    from qwenops.config.saved import save_derived_profile
    from qwenops.errors import BadInputError

    (tmp_path / "profiles").mkdir()
    os.mkfifo(tmp_path / "profiles" / "x-fitted.yaml")
    with pytest.raises(BadInputError) as caught:
        save_derived_profile(tmp_path, "x-fitted", extends="x", description="d", values={"max_model_len": 512},
                             comment=[])
    assert "is a named pipe" in caught.value.one_line() and caught.value.field == "state_dir"


def test_every_file_qwenops_writes_goes_through_atomicfile() -> None:
    """The class, not the case: no module but atomicfile.py (and install's own tree writer, which writes by
    directory descriptor) opens a file for writing. tinymodel writes inside a fresh mkdtemp directory."""
    import re

    from tests.conftest import REPO

    writes = re.compile(r"\.write_text\(|\.write_bytes\(|open\([^)]*[\"'][wax]b?[\"']|mkstemp|\.write\(path|O_WRONLY"
                        r"|FileHandler\(|shutil\.copy")
    allowed = {"qwenops/atomicfile.py", "qwenops/install/tree.py", "qwenops/install/run.py",  # tree.write
               "qwenops/tinymodel.py",
               "qwenops/supervisor/process.py",  # the server's rotated log, opened O_NOFOLLOW
               "qwenops/cli/views/status.py"}  # os.devnull, opened to silence a library's own output
    found = sorted(str(path.relative_to(REPO)) for path in (REPO / "qwenops").rglob("*.py")
                   if writes.search(path.read_text(encoding="utf-8")) and str(path.relative_to(REPO)) not in allowed)
    assert found == []


@pytest.mark.parametrize("where", ["probe", "workload"])
def test_an_integer_past_pythons_bound_is_bad_input(where: str, tmp_path: Path) -> None:
    huge = "9" * 5000
    if where == "probe":
        path = tmp_path / "probe.json"
        path.write_text('{"facts": ' + huge + "}")
        result = CliRunner().invoke(cli, ["doctor", "-p", "4090d", "--probe-file", str(path)])
        assert result.exit_code == 2, result.output
        assert "an integer of more than 4,300 digits" in result.stderr and "internal error" not in result.stderr
        return
    path = tmp_path / "w.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "x"}], "max_tokens": ' + huge + "}\n")
    with pytest.raises(BadInputError, match="line 1: an integer of more than 4,300 digits"):
        load_workload(path)


def test_a_rejected_workload_value_is_shown_short(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "A" * 3_000_000, "content": "x"}], "max_tokens": 4}) + "\n")
    with pytest.raises(BadInputError) as caught:
        load_workload(path)
    assert len(caught.value.one_line()) < 400 and "(3,000,002 characters)" in caught.value.message


def test_a_log_line_nested_past_the_parser_is_a_line_and_the_rest_is_read(tmp_path: Path) -> None:
    log = tmp_path / "deep.log"
    log.write_text('{"log":' + "[" * 3000 + "\n"
                   "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                   "capacity of 23.55 GiB of which 1.20 GiB is free.\n")
    result = CliRunner().invoke(cli, ["troubleshoot", "--log", str(log), "--json"])
    assert "internal error" not in result.output
    categories = [finding["category"] for finding in json.loads(result.stdout)["data"]["findings"]]
    assert any(category.endswith("_oom") for category in categories), categories


def test_a_state_record_nested_past_the_parser_is_no_record(tmp_path: Path) -> None:
    record = tmp_path / "serve-p.fatal.json"
    record.write_text("[" * 4096)
    assert read_last_fatal(record) is None


def test_a_server_line_without_end_is_cut_not_held(tmp_path: Path) -> None:
    """serve read its child's output with an unbounded readline: 400 MiB of one line cost ~1.8 GB and went whole
    to the log and the console (audit 5). A line is kept to MAX_SERVER_LINE_BYTES and the rest dropped."""
    import sys

    from qwenops.supervisor.process import LogFile, spawn
    from qwenops.untrusted import MAX_SERVER_LINE_BYTES

    seen: list[str] = []
    script = ("import sys; w = sys.stdout.buffer.write; w(b'start\\n'); w(b'A' * (8 << 20));"
              "w(b'\\nload 1\\rload 2\\n'); w(b'end\\n')")
    process = spawn([sys.executable, "-c", script], env={"PATH": "/usr/bin:/bin"}, log=LogFile(tmp_path / "s.log"),
                    on_line=seen.append)
    process.popen.wait(60)
    assert process.pump is not None
    process.pump.join(60)
    assert seen[0] == "start" and seen[2:] == ["load 2", "end"]
    assert seen[1].startswith("A" * 1000) and seen[1].endswith("[qwenops: the rest of this line was dropped]")
    assert len(seen[1]) < MAX_SERVER_LINE_BYTES + 100
    assert (tmp_path / "s.log").stat().st_size < 2 * MAX_SERVER_LINE_BYTES


@pytest.mark.parametrize(("line", "why"), [
    ('{"messages":[{"role":"user","content":"hi \\ud800 there"}],"max_tokens":8}', "a lone surrogate (\\ud800)"),
    ('{"messages":[' + ",".join(['{"role":"user","content":""}'] * 1025) + '],"max_tokens":8}',
     "1,025 of them, at most 1,024"),
])
def test_a_workload_line_no_request_can_carry_is_bad_input(line: str, why: str, tmp_path: Path) -> None:
    """A lone surrogate (valid JSON) was exit 4; 2 million messages in 60 MiB were 0.8 GB (audit 5)."""
    path = tmp_path / "w.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=re.escape(why)) as caught:
        load_workload(path)
    assert caught.value.field == "--workload"
