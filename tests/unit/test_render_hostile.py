"""Profile text is data: refused at validation (one line naming the field, exit 2) or quoted for its target.

A profile whose every text field is hostile renders every target with the structure of a clean render
(the same sections, directives, documents, keys, instructions and argv words), and each accepted value
reads back from its file exactly. Security 1 and 5 (docs/security.md).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.config.loader import load_profile
from qwenops.config.profile import Profile
from qwenops.errors import BadInputError, ExitCode
from qwenops.render.run import DEPLOY_TARGETS
from qwenops.render.script import start_script
from qwenops.render.systemd import env_file, gateway_unit, systemd_unit
from qwenops.render.vllm import vllm_argv
from qwenops.untrusted import MAX_TEXT_FIELD_CHARS
from tests.conftest import GOLDEN_STATE_DIR

# Every character that means something to some target: systemd specifiers and continuations, shell
# expansions, YAML indicators and document markers, Dockerfile escapes, comment starters, quotes.
NASTY = ("95% of VRAM %h %% \"dq\" 'sq' `id` $(id) ${HOME} $HOME $$ \\ \\n # ; & | < > * ? ~ ! "
         "{a: b} [x, y] &anchor *alias --- ... - key: value @ é ü 漢字 😀 ends in a backslash \\")
LINE_BREAKS = {
    "newline": "x\n[Service]\nExecStartPre=+/bin/sh -c 'id > /tmp/pwned'",
    "carriage return": "x\r[Service]\rExecStartPre=+/bin/sh -c id",
    "CRLF": "x\r\nQWENOPS_API_KEY=",
    "tab": "x\ty",
    "U+2028": "x\u2028---\u2028kind: Pod",
    "U+2029": "x\u2029y",
    "U+0085": "x\x85y",
    "escape": "x\x1b]0;title\x07y",
    "NUL": "x\x00y",
    "DEL": "x\x7fy",
    "bidi override": "x\u202ey",
    "YAML document": "x\n---\napiVersion: v1\nkind: Pod\nspec: {hostPID: true}",
}
CLEAN_ENV = {"PLAIN": "x", "EMPTY": "x", "SPACES": "x", "BRACES": "x", "NASTY": "x"}
HOSTILE_ENV = {"PLAIN": "1", "EMPTY": "", "SPACES": "  lead and trail  ", "BRACES": "a}b${X:-y}}", "NASTY": NASTY}
EXTRA_ARGS = ["--chat-template", NASTY, "--override-generation-config", '{"temperature": 0.5}', "#", ";", "-", "%h"]


def hostile_profile(**changes: Any) -> dict[str, Any]:
    """A GPU profile's data whose every text field holds NASTY (or what its field allows)."""
    data: dict[str, Any] = {
        "description": NASTY,
        "model": f"org/{NASTY}",
        "served_model_name": NASTY,
        "host": "::",
        "port": 8000,
        "reasoning_parser": "qwen3",
        "quantization": "awq_marlin",
        "extra_args": EXTRA_ARGS,
        "env": HOSTILE_ENV,
        "requirements": {"gpu_name": NASTY, "cuda_version": "12.4"},
    }
    data.update(changes)
    return data


def clean_profile() -> dict[str, Any]:
    return hostile_profile(description="clean", model="org/clean", served_model_name="clean", host="127.0.0.1",
                           extra_args=["--xa", "b", "--xc", "d", "e", "f", "g", "h"], env=CLEAN_ENV,
                           requirements={"gpu_name": "clean", "cuda_version": "12.4"})


def write_profile(directory: Path, name: str, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=False), encoding="utf-8")
    return path


def load(tmp_path: Path, data: dict[str, Any], name: str = "p") -> Profile:
    """NAME written into TMP_PATH/profiles with DATA, loaded."""
    write_profile(tmp_path / "profiles", name, data)
    return load_profile(name, env={}, profiles_dir=tmp_path / "profiles")


def cli_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environment = {"QWENOPS_PROFILES_DIR": str(tmp_path / "profiles"), **(env or {})}
    result = CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def assert_refused(code: int, out: str, err: str, field: str) -> None:
    assert code == ExitCode.BAD_INPUT, err
    assert out == ""
    assert err.startswith(f"error: {field}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "\x1b" not in err and "\r" not in err


# ------------------------------------------------------------------------------ refused at validation

# (field as named in the error, the profile data with VALUE put there)
TEXT_FIELDS: dict[str, Any] = {
    "description": lambda v: {"description": v},
    "model": lambda v: {"model": v},
    "served_model_name": lambda v: {"served_model_name": v},
    "host": lambda v: {"host": v},
    "reasoning_parser": lambda v: {"reasoning_parser": v},
    "quantization": lambda v: {"quantization": v},
    "requirements.gpu_name": lambda v: {"requirements": {"gpu_name": v}},
    "requirements.cuda_version": lambda v: {"requirements": {"cuda_version": v}},
    "extra_args": lambda v: {"extra_args": ["--x", v]},
    "env": lambda v: {"env": {"HF_HOME": v}},
}


@pytest.mark.parametrize("breaker", sorted(LINE_BREAKS))
@pytest.mark.parametrize("field", sorted(TEXT_FIELDS))
def test_a_control_character_in_any_text_field_is_refused_naming_the_field(
        field: str, breaker: str, tmp_path: Path) -> None:
    data = hostile_profile(**TEXT_FIELDS[field](LINE_BREAKS[breaker]))
    write_profile(tmp_path / "profiles", "p", data)
    for target in ("flags", "systemd", "env", "kubernetes"):
        assert_refused(*cli_run(tmp_path, "render", target, "-p", "p"), field=field)


def test_env_names_and_secrets_in_refused_values_are_never_echoed(tmp_path: Path) -> None:
    for env in ({"A\nB": "x"}, {"É": "x"}, {"A-B": "x"}, {"1A": "x"}, {"HF_TOKEN": "hf_SECRET\n"}):
        write_profile(tmp_path / "profiles", "p", hostile_profile(env=env))
        code, out, err = cli_run(tmp_path, "render", "flags", "-p", "p")
        assert_refused(code, out, err, field="env")
        assert "hf_SECRET" not in err
    write_profile(tmp_path / "profiles", "p", hostile_profile(extra_args=["--x", "sk-SECRET\r"]))
    code, out, err = cli_run(tmp_path, "render", "flags", "-p", "p")
    assert_refused(code, out, err, field="extra_args")
    assert "word 2" in err and "sk-SECRET" not in err


@pytest.mark.parametrize("field", ["model", "served_model_name", "quantization"])
def test_a_flag_value_that_starts_with_a_dash_is_refused(field: str, tmp_path: Path) -> None:
    write_profile(tmp_path / "profiles", "p", hostile_profile(**{field: "--trust-remote-code"}))
    assert_refused(*cli_run(tmp_path, "render", "flags", "-p", "p"), field=field)


@pytest.mark.parametrize("host", ["0.0.0.0 --x", "a b", "$(id)", "fe80::1%eth0", "-x", "a..b", "é.example", "[::1]",
                                  "a" * 64 + ".example", ""])
def test_a_host_that_is_no_address_or_host_name_is_refused(host: str, tmp_path: Path) -> None:
    write_profile(tmp_path / "profiles", "p", hostile_profile(host=host))
    assert_refused(*cli_run(tmp_path, "render", "compose", "-p", "p"), field="host")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "::1", "127.0.0.1", "localhost", "gpu-1.example.org", "10.0.0.7"])
def test_addresses_and_host_names_are_accepted(host: str, tmp_path: Path) -> None:
    assert load(tmp_path, hostile_profile(host=host)).host == host


def test_a_very_long_text_field_is_refused_in_one_short_line(tmp_path: Path) -> None:
    assert load(tmp_path, hostile_profile(description="d" * MAX_TEXT_FIELD_CHARS)).description
    write_profile(tmp_path / "profiles", "p", hostile_profile(description="d" * (MAX_TEXT_FIELD_CHARS + 1)))
    code, out, err = cli_run(tmp_path, "render", "systemd", "-p", "p")
    assert_refused(code, out, err, field="description")
    assert len(err) < 300


@pytest.mark.parametrize("name", ["a b", "%h", 'q"uote', "x\ny", "x\ry", "-x", ".hidden", "a$b", "a;b", "é", "a" * 64])
def test_a_profile_name_outside_the_name_rule_is_refused(name: str, tmp_path: Path) -> None:
    write_profile(tmp_path / "profiles", name, hostile_profile())
    for target in ("flags", "systemd", "compose"):
        code, out, err = cli_run(tmp_path, "render", target, "-p", name)
        assert_refused(code, out, err, field="profile")
        assert "letters, digits, '.', '_' and '-'" in err
    # Named by a profile it extends, or as the default profile.
    write_profile(tmp_path / "profiles", "child", {"extends": name})
    assert_refused(*cli_run(tmp_path, "render", "flags", "-p", "child"), field="extends")
    assert_refused(*cli_run(tmp_path, "render", "flags", env={"QWENOPS_PROFILE": name}), field="profile")


def test_profiles_list_shows_a_badly_named_file_as_a_problem_beside_the_rest(tmp_path: Path) -> None:
    write_profile(tmp_path / "profiles", "a b", hostile_profile())
    write_profile(tmp_path / "profiles", "good", clean_profile())
    _, out, _ = cli_run(tmp_path, "profiles", "list", "--json")
    listed = {p["name"]: p["problem"] for p in json.loads(out)["data"]["profiles"]}
    assert listed["good"] is None and "not a profile name" in listed["a b"]


@pytest.mark.parametrize("breaker", sorted(LINE_BREAKS))
def test_set_and_environment_overrides_are_validated_the_same(breaker: str, tmp_path: Path) -> None:
    write_profile(tmp_path / "profiles", "p", clean_profile())
    value = LINE_BREAKS[breaker]
    assert_refused(*cli_run(tmp_path, "render", "flags", "-p", "p", "--set", f"served_model_name={value}"),
                   field="served_model_name")
    if "\x00" not in value:  # no environment variable can hold a NUL
        assert_refused(*cli_run(tmp_path, "render", "flags", "-p", "p", env={"QWENOPS_MODEL": value}), field="model")


# ------------------------------------------------------------------------------ the key-injection case


def test_a_description_cannot_put_an_empty_key_last_in_the_installed_env_file(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    write_profile(tmp_path / "profiles", "p", hostile_profile(description="x\nQWENOPS_API_KEY="))
    assert_refused(*cli_run(tmp_path, "install", "systemd", "-p", "p", "--root", str(tmp_path / "root")),
                   field="description")
    # Without the line break the text is a quoted comment, and install's new key is the only key.
    for description in ("QWENOPS_API_KEY=", "x \\", "QWENOPS_API_KEY=\\"):
        write_profile(tmp_path / "profiles", "p", hostile_profile(description=description))
        code, _, err = cli_run(tmp_path, "install", "systemd", "-p", "p", "--root", str(tmp_path / "root"))
        assert code == 0, err
        from dotenv import dotenv_values

        env_path = tmp_path / "root" / "etc" / "qwenops" / "qwenops.env"
        values = dotenv_values(env_path)
        assert len(values["QWENOPS_API_KEY"] or "") >= 32
        assert sum(line.startswith("QWENOPS_API_KEY=") for line in env_path.read_text().splitlines()) == 1
        env_path.unlink()


def test_no_env_file_line_ends_in_a_backslash_that_would_swallow_the_next(tmp_path: Path) -> None:
    # systemd's EnvironmentFile parser continues a comment that ends in a backslash onto the next line.
    text = env_file(load(tmp_path, hostile_profile(description="ends in a backslash \\")))
    assert not any(line.endswith("\\") for line in text.splitlines())
    assert "\nQWENOPS_API_KEY=\n" in text


# ------------------------------------------------------------------------------ --qwenops-bin


@pytest.mark.parametrize("path", ["/opt/q/bin/qwenops\n[Service]\nExecStartPre=+/bin/sh", "/opt/q\rx", "bin/qwenops",
                                  "~/qwenops", "/opt/q\tx"])
def test_a_qwenops_bin_that_is_not_one_absolute_path_is_refused(path: str, tmp_path: Path) -> None:
    profile = load(tmp_path, clean_profile())
    for render in (systemd_unit, gateway_unit):
        with pytest.raises(BadInputError) as raised:
            render(profile, qwenops_bin=path)
        assert raised.value.field == "--qwenops-bin" and "\n" not in raised.value.one_line()
    write_profile(tmp_path / "profiles", "p", clean_profile())
    (tmp_path / "root").mkdir()
    code, out, err = cli_run(tmp_path, "install", "systemd", "-p", "p", "--root", str(tmp_path / "root"),
                             "--qwenops-bin", path)
    assert_refused(code, out, err, field="--qwenops-bin")


def test_a_qwenops_bin_with_spaces_quotes_and_specifiers_stays_one_word(tmp_path: Path) -> None:
    path = "/opt/my dir/100% \"q\" $x\\bin/qwenops"
    unit = systemd_unit(load(tmp_path, clean_profile()), qwenops_bin=path)
    assert systemd_words(directives(unit)["Service"]["ExecStart"][0]) == [path, "serve", "--profile", "p"]
    assert systemd_words(directives(unit)["Service"]["ExecStartPre"][1]) == [path, "doctor", "--profile", "p"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_finds_the_executable_at_a_quoted_path(tmp_path: Path) -> None:
    binary = tmp_path / "my dir" / "100% q"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    unit = tmp_path / "qwenops.service"
    unit.write_text(systemd_unit(load(tmp_path, hostile_profile()), qwenops_bin=str(binary)))
    done = subprocess.run(["systemd-analyze", "verify", "--recursive-errors=no", unit.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


# ------------------------------------------------------------------------------ structure is unchanged


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}}, read as systemd reads it (comments, continuations)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        pending = ""
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, {})
            continue
        key, _, value = line.partition("=")
        sections.setdefault(current, {}).setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_words(value: str) -> list[str]:
    """An Exec*= value as systemd splits it (quotes, C escapes), then '%%' and, past the executable, '$$'."""
    words: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == " ":
            i += 1
            continue
        word, quote = "", None
        while i < len(value) and (quote or value[i] != " "):
            char = value[i]
            if char == "\\":
                word += {"n": "\n", "t": "\t"}.get(value[i + 1], value[i + 1])
                i += 2
                continue
            if char in "\"'" and quote in (None, char):
                quote = None if quote else char
            else:
                word += char
            i += 1
        word = word.replace("%%", "\x00")
        assert "%" not in word, f"an unescaped specifier in {word!r}"
        word = word.replace("\x00", "%")
        words.append(word if not words else word.replace("$$", "$"))
    return words


def shape(node: Any) -> Any:
    """A document's structure: its keys and list lengths, with every scalar replaced by its type."""
    if isinstance(node, dict):
        return {key: shape(value) for key, value in node.items()}
    if isinstance(node, list):
        return [shape(item) for item in node]
    return type(node).__name__


def dockerfile_instructions(text: str) -> list[str]:
    """Each instruction's keyword (and ENV's keys), continuations joined, comments skipped."""
    found: list[str] = []
    logical = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line
        if line.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        keyword, _, rest = logical.strip().partition(" ")
        if keyword == "ENV":
            keyword += " " + " ".join(sorted(re.findall(r"(\w+)=", rest)))
        found.append(keyword)
        logical = ""
    return found


def env_keys(text: str) -> list[str]:
    return [line.partition("=")[0] for line in text.splitlines() if line and not line.startswith("#")]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Profile, Profile]:
    # One name for both: the name is part of the structure (a ConfigMap key) and is validated, not quoted.
    return load(tmp_path / "clean", clean_profile()), load(tmp_path / "hostile", hostile_profile())


def render_text(target: str, profile: Profile) -> str:
    module, _, function = DEPLOY_TARGETS[target].partition(":")
    text: str = getattr(importlib.import_module(module), function)(profile)
    return text


def compose_config_text(text: str, name: str) -> str:
    """An inline config of a compose file as the container gets it (compose reads `$$` as `$`)."""
    content: str = yaml.safe_load(text)["configs"][name]["content"]
    assert re.search(r"(?<!\$)\$(?:\$\$)*(?!\$)", content) is None, f"{name} holds a lone $ compose would expand"
    return content.replace("$$", "$")


def test_every_render_of_a_hostile_profile_has_the_structure_of_a_clean_one(pair: tuple[Profile, Profile]) -> None:
    clean, hostile = pair
    for target in ("systemd", "gateway-systemd"):
        assert directives(render_text(target, hostile)).keys() == directives(render_text(target, clean)).keys()
        for section, keys in directives(render_text(target, clean)).items():
            got = directives(render_text(target, hostile))[section]
            assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in keys.items()}, (target, section)
    assert env_keys(render_text("env", hostile)) == env_keys(render_text("env", clean))
    assert dockerfile_instructions(render_text("dockerfile", hostile)) == dockerfile_instructions(
        render_text("dockerfile", clean))
    for target in ("compose", "kubernetes", "helm-values", "kubernetes-monitoring"):
        ours = list(yaml.safe_load_all(render_text(target, hostile)))
        theirs = list(yaml.safe_load_all(render_text(target, clean)))
        assert [shape(doc) for doc in ours] == [shape(doc) for doc in theirs], target
    assert [d["kind"] for d in yaml.safe_load_all(render_text("kubernetes", hostile))] == [
        "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"]
    assert [d["kind"] for d in yaml.safe_load_all(render_text("kubernetes-monitoring", hostile))] == [
        "ServiceMonitor", "PrometheusRule"]
    # The inline Prometheus files of compose's monitoring profile are documents of the same shape too.
    for name in ("prometheus-config", "prometheus-rules"):
        ours = yaml.safe_load(compose_config_text(render_text("compose", hostile), name))
        theirs = yaml.safe_load(compose_config_text(render_text("compose", clean), name))
        assert shape(ours) == shape(theirs), name


def test_every_comment_of_a_hostile_render_holds_its_text_quoted(pair: tuple[Profile, Profile]) -> None:
    _, hostile = pair
    quoted = json.dumps(NASTY, ensure_ascii=False)  # a JSON string: it never ends in a backslash
    for target in DEPLOY_TARGETS:
        text = render_text(target, hostile)
        assert f"# Profile: {quoted}" in text.splitlines(), target
        assert NASTY not in text.replace(quoted, ""), target  # nowhere raw


def kubelet(text: str, env: dict[str, str] | None = None) -> str:
    """TEXT as the kubelet expands a container's args and env values (Kubernetes' expansion package): `$$` is
    `$`, `$(NAME)` is NAME's value where the container defines it, else left as written."""
    defined = {"VLLM_API_KEY": "sk-in-the-pod"} if env is None else env
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            end = text.find(")", i + 2) if text[i + 1] == "(" else -1
            if end >= 0:
                name = text[i + 2:end]
                out.append(defined.get(name, text[i:end + 1]))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def test_accepted_values_read_back_exactly(pair: tuple[Profile, Profile], tmp_path: Path) -> None:
    _, hostile = pair
    unit = directives(render_text("systemd", hostile))
    assert unit["Unit"]["Description"] == [f"qwenops: {NASTY} on vLLM (profile p)".replace("%", "%%")]
    assert systemd_words(unit["Service"]["ExecStart"][0])[1:] == ["serve", "--profile", "p"]
    values = yaml.safe_load(render_text("helm-values", hostile))["servingEngineSpec"]["modelSpec"][0]
    # What the container gets: the kubelet expands `$(NAME)` in args and env values (VLLM_API_KEY is set there).
    assert kubelet(values["modelURL"]) == f"org/{NASTY}"
    assert [kubelet(arg) for arg in values["vllmConfig"]["extraArgs"][-len(EXTRA_ARGS):]] == EXTRA_ARGS
    assert {e["name"]: kubelet(e["value"]) for e in values["env"]}.items() >= HOSTILE_ENV.items()
    assert kubelet("--chat-template $(VLLM_API_KEY)") == "--chat-template sk-in-the-pod"  # what escaping prevents
    compose = yaml.safe_load(render_text("compose", hostile))
    assert compose["services"]["qwenops"]["ports"] == ["[::]:8000:8000"]
    assert compose["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]  # whatever the profile binds
    rules = yaml.safe_load(compose_config_text(render_text("compose", hostile), "prometheus-rules"))
    kv = next(r for r in rules["groups"][0]["rules"] if r["alert"] == "VllmKvCacheFullWithWaiting")
    # one PromQL string, the name exactly ($ as \x24 and [ as \x5b, which Grafana cannot expand)
    assert f"model_name={json.dumps(NASTY).replace('$', chr(92) + 'x24').replace('[', chr(92) + 'x5b')}" in kv["expr"]
    prometheus_rule = list(yaml.safe_load_all(render_text("kubernetes-monitoring", hostile)))[1]
    assert prometheus_rule["spec"]["groups"] == rules["groups"]
    config = next(d for d in yaml.safe_load_all(render_text("kubernetes", hostile)) if d["kind"] == "ConfigMap")
    (tmp_path / "back").mkdir()
    (tmp_path / "back" / "p.yaml").write_text(config["data"]["p.yaml"])
    assert load_profile("p", env={}, profiles_dir=tmp_path / "back") == hostile


def test_the_start_script_execs_the_hostile_argv_and_environment_exactly(
        pair: tuple[Profile, Profile], tmp_path: Path) -> None:
    _, hostile = pair
    script = tmp_path / "start_api.sh"
    script.write_text(start_script(hostile, state_dir=Path(GOLDEN_STATE_DIR)))
    subprocess.run(["bash", "-n", str(script)], check=True)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "vllm").write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$ARGV_OUT"\nenv -0 > "$ENV_OUT"\n')
    (fake_bin / "vllm").chmod(0o755)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "ARGV_OUT": str(tmp_path / "argv"),
           "ENV_OUT": str(tmp_path / "env"), "PLAIN": "from the caller"}
    subprocess.run(["bash", str(script)], check=True, env=env, cwd=tmp_path, timeout=60)
    argv = (tmp_path / "argv").read_text().split("\0")[:-1]
    assert ["vllm", *argv] == vllm_argv(hostile, state_dir=Path(GOLDEN_STATE_DIR))
    seen = dict(item.split("=", 1) for item in (tmp_path / "env").read_text().split("\0") if "=" in item)
    assert seen["PLAIN"] == "from the caller"  # an existing value wins
    assert {key: seen[key] for key in ("SPACES", "BRACES", "NASTY")} == {
        key: HOSTILE_ENV[key] for key in ("SPACES", "BRACES", "NASTY")}
    assert not list(tmp_path.glob("pwned*"))


def test_flags_render_as_shell_words_that_split_back_to_the_argv(pair: tuple[Profile, Profile],
                                                                 tmp_path: Path) -> None:
    code, out, err = cli_run(tmp_path / "hostile", "render", "flags", "-p", "p",
                             env={"QWENOPS_STATE_DIR": GOLDEN_STATE_DIR})
    assert code == 0, err
    assert shlex.split(out) == vllm_argv(pair[1], state_dir=Path(GOLDEN_STATE_DIR))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_hostile_units(pair: tuple[Profile, Profile], tmp_path: Path) -> None:
    server = tmp_path / "qwenops.service"
    server.write_text(systemd_unit(pair[1], qwenops_bin=sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", "--recursive-errors=no", server.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    gateway = tmp_path / "gateway" / "qwenops-gateway.service"
    gateway.parent.mkdir()
    gateway.write_text(gateway_unit(pair[1], qwenops_bin=sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", "--recursive-errors=no", gateway.name], cwd=gateway.parent,
                          capture_output=True, text=True, timeout=120, check=False)
    # The server's unit it wants is not installed here: that is verify's only remark.
    assert done.returncode == 0, done.stdout + done.stderr
    assert all("qwenops.service" in line for line in (done.stdout + done.stderr).splitlines())


def test_the_innocent_percent_is_not_a_specifier(tmp_path: Path) -> None:
    profile = load(tmp_path, clean_profile() | {"served_model_name": "uses 95% of VRAM",
                                                "description": "uses 95% of VRAM"})
    unit = systemd_unit(profile)
    assert "Description=qwenops: uses 95%% of VRAM on vLLM (profile p)" in unit.splitlines()


# ---------------------------------------------------------------------- names Kubernetes takes as they are

# apimachinery's rules (k8s.io/apimachinery/pkg/util/validation): a label value, and an RFC 1123 label.
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
RFC1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize("name", ["x_", "a-", "b.", "_x", "-x"])
def test_a_profile_name_that_cannot_be_a_label_value_is_refused(name: str, tmp_path: Path) -> None:
    """`x_` was rendered into app.kubernetes.io/instance and the selector, and the API server refused the
    manifests (audit 4): a name now starts and ends with a letter or digit."""
    write_profile(tmp_path / "profiles", name, {"extends": "4090d"})
    code, out, err = cli_run(tmp_path, "render", "kubernetes", "-p", name)
    assert_refused(code, out, err, "profile")


@pytest.mark.parametrize("name", ["My_Prof.v2", "A1", "qwen3_14b-awq"])
def test_names_in_kubernetes_renders_meet_the_api_servers_rules(name: str, tmp_path: Path) -> None:
    write_profile(tmp_path / "profiles", name, {"extends": "4090d"})
    labels: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("labels", "matchLabels", "selector") and isinstance(value, dict):
                    labels.extend(v for v in value.values() if isinstance(v, str))
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    for target in ("kubernetes", "kubernetes-monitoring"):
        code, out, err = cli_run(tmp_path, "render", target, "-p", name)
        assert code == 0, err
        for document in yaml.safe_load_all(out):
            collect(document)
    assert name in labels
    assert all(LABEL_VALUE.fullmatch(value) and len(value) <= 63 for value in labels), labels
    code, out, err = cli_run(tmp_path, "render", "helm-values", "-p", name)
    assert code == 0, err
    spec = yaml.safe_load(out)["servingEngineSpec"]["modelSpec"][0]["name"]
    assert RFC1123_LABEL.fullmatch(spec) and spec == name.lower().replace("_", "-").replace(".", "-")


def test_yaml_aliases_are_refused_so_a_small_profile_cannot_stand_for_gigabytes(tmp_path: Path) -> None:
    """80,000 env entries aliasing one 4,000-character value (1 MiB of YAML) took `render kubernetes` 297 s and
    2.3 GB and wrote 321 MB (audit 4). A profile writes each value out."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    lines = ["extends: 4090d", "env:", f"  V0: &v \"{'x' * 4000}\""] + [f"  V{i}: *v" for i in range(1, 80_000)]
    (profiles / "bomb.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = cli_run(tmp_path, "render", "kubernetes", "-p", "bomb")
    assert code == ExitCode.BAD_INPUT and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: YAML error at ") and "bomb.yaml:4:7: an alias (*v)" in err
