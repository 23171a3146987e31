"""The contracts other tools rely on: the JSON envelope and the exit codes (docs/architecture.md)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.errors import ExitCode
from qwenops.results import SCHEMA_VERSION, CommandResult
from tests.conftest import REPO

ENVELOPE_KEYS = ["qwenops", "command", "ok", "data", "errors"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_exit_codes_are_the_documented_numbers() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0, "CHECK_FAILED": 1, "BAD_INPUT": 2, "UNREACHABLE": 3, "INTERNAL": 4, "INTERRUPTED": 130,
    }


def test_envelope_shape_on_success() -> None:
    code, out, err = run("render", "flags", "--profile", "4090d", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ENVELOPE_KEYS
    assert doc["qwenops"] == SCHEMA_VERSION
    assert doc["command"] == "render flags"
    assert doc["ok"] is True
    assert doc["errors"] == []
    assert doc["data"]["argv"][:3] == ["vllm", "serve", "Qwen/Qwen3-14B-AWQ"]


def test_envelope_shape_on_error_is_one_document_with_exit_2() -> None:
    code, out, err = run("profiles", "show", "nope", "--json")
    assert code == ExitCode.BAD_INPUT
    doc = json.loads(out)  # exactly one JSON document, nothing else on stdout
    assert list(doc) == ENVELOPE_KEYS
    assert doc["ok"] is False
    assert doc["command"] == "profiles show"
    assert doc["data"] is None
    [error] = doc["errors"]
    assert error["code"] == "profile_not_found"
    assert error["field"] == "profile"
    assert err == ""


def test_usage_error_with_json_still_prints_an_envelope() -> None:
    code, out, _ = run("render", "flags", "--json", "--no-such-option")
    assert code == ExitCode.BAD_INPUT
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["errors"] == [{"code": "usage", "message": "no such option", "field": "--no-such-option",
                              "hint": "see `qwenops render flags --help`"}]


USAGE_ERRORS = [
    (["render", "flags", "--profil", "x"], "error: --profil: no such option (did you mean --profile? "
                                           "see `qwenops render flags --help`)"),
    (["--bogus"], "error: --bogus: no such option (see `qwenops --help`)"),
    (["render", "flagz"], "error: no such command 'flagz' (see `qwenops render --help`)"),
    (["plan", "--max-model-len"], "error: --max-model-len: requires an argument (see `qwenops plan --help`)"),
    (["plan", "--max-model-len", "many"], "error: --max-model-len: 'many' is not a valid integer range "
                                          "(see `qwenops plan --help`)"),
    (["profiles", "show"], "error: NAME: missing (see `qwenops profiles show --help`)"),
]


@pytest.mark.parametrize(("args", "line"), USAGE_ERRORS)
def test_usage_errors_are_one_line_naming_the_option(args: list[str], line: str) -> None:
    code, out, err = run(*args)
    assert (code, out, err) == (ExitCode.BAD_INPUT, "", line + "\n")


@pytest.mark.parametrize(("args", "line"), USAGE_ERRORS)
def test_usage_errors_with_json_name_the_field(args: list[str], line: str) -> None:
    code, out, err = run(*args, "--json")
    [error] = json.loads(out)["errors"]
    assert code == ExitCode.BAD_INPUT and err == ""
    assert line.startswith(f"error: {error['field']}: " if error["field"] else "error: ")


def test_failed_result_maps_to_its_exit_code() -> None:
    assert CommandResult(command="x", ok=False).exit_code == ExitCode.CHECK_FAILED
    assert CommandResult(command="x", ok=False, failure_code=ExitCode.UNREACHABLE).exit_code == 3
    assert CommandResult(command="x").exit_code == ExitCode.OK


def test_internal_error_is_one_line_and_exit_4(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenops.render import run as render

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(render, "render_flags", boom)
    code, out, err = run("render", "flags", "--profile", "4090d")
    assert code == ExitCode.INTERNAL
    assert out == ""
    assert err.count("\n") == 1
    assert "internal error: RuntimeError: simulated bug" in err
    assert "Traceback" not in err


def test_root_level_usage_error_with_json_is_an_envelope() -> None:
    for args in (["--bogus", "render", "flags", "--json"], ["--json"]):
        code, out, _ = run(*args)
        assert code == ExitCode.BAD_INPUT
        doc = json.loads(out)
        assert list(doc) == ENVELOPE_KEYS and doc["ok"] is False


def test_piped_text_is_not_wrapped_or_padded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal and no COLUMNS: every doctor finding and fix stays whole on its line, no trailing blanks."""
    monkeypatch.delenv("COLUMNS", raising=False)
    probe = str(REPO / "tests" / "data" / "probes" / "rtx4090-cuda122.json")
    code, text, _ = run("doctor", "--profile", "4090d", "--probe-file", probe)
    _, doc, _ = run("doctor", "--profile", "4090d", "--probe-file", probe, "--json")
    assert code == 1
    lines = text.splitlines()
    for check in json.loads(doc)["data"]["checks"]:
        line = next(line for line in lines if f" {check['name']} " in line)
        assert " ".join(check["finding"].split()) in line
        assert " ".join((check["fix"] or "").split()) in line
    assert all(line == line.rstrip() for line in lines)
