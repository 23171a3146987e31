"""`install|uninstall systemd` against hostile layouts and env files: every refusal is one line and exit 2,
nothing is written, removed or chmodded outside (or inside) the root, and the key install reports is the
key systemd reads.

The suite runs as root, so "another user" is uid 65534 (nobody) and a refusal cannot come from a
permission the kernel denied: it must come from install's own checks.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import qwenops.install.run as install_module
import qwenops.install.tree as install_tree
from qwenops.cli import cli
from qwenops.errors import BadInputError, CheckFailedError
from qwenops.install.envfile import systemd_env
from qwenops.install.run import TOKEN_DETAIL, UNIT_PATH, install_systemd, uninstall_systemd

ENV_PATH = "etc/qwenops/qwenops.env"
UNIT = UNIT_PATH.lstrip("/")
NOBODY = 65534
KEY_LINE = re.compile(r"^QWENOPS_API_KEY=(.*)$", re.MULTILINE)
TOKEN_LINE = re.compile(r"^QWENOPS_GATEWAY_TOKEN=(.*)$", re.MULTILINE)


def never_run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    raise AssertionError(f"ran {list(argv)}")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    """Every path under TOP with its type, mode, owner, size, mtime and link target: 'nothing changed'."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            found[str(path.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                                 str(path.readlink()) if path.is_symlink() else None)
    return found


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def refused(root: Path, *args: str, command: Sequence[str] = ("install", "systemd", "-p", "4090d")) -> str:
    """The one error line of COMMAND under ROOT, the same in a dry run; nothing under ROOT's parent changed."""
    before = snapshot(root.parent)
    lines: list[str] = []
    for dry_run in (["--dry-run"], []):
        result = invoke(*command, "--root", str(root), *args, *dry_run)
        assert result.exit_code == 2, (result.exit_code, result.output)
        assert result.stdout == ""
        lines.append(result.stderr)
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
        assert snapshot(root.parent) == before
    assert lines[0] == lines[1]  # a dry run shows the same refusal
    return lines[0].rstrip("\n")


def env_at(root: Path, text: str = "QWENOPS_API_KEY=sk-mine-1234\n", mode: int = 0o600) -> Path:
    env = root / ENV_PATH
    env.parent.mkdir(parents=True, exist_ok=True)
    env.write_text(text)
    env.chmod(mode)
    return env


# ----------------------------------------------------------------------------- symlinks under the root


def test_a_dangling_env_file_symlink_is_refused_and_no_key_lands_outside(root: Path) -> None:
    env = root / ENV_PATH
    env.parent.mkdir(parents=True)
    env.symlink_to(root.parent / "outside" / "stolen.env")
    line = refused(root)
    assert f"{env} is a symlink (to {root.parent}/outside/stolen.env)" in line
    assert not (root.parent / "outside" / "stolen.env").exists()


def test_an_env_file_symlink_to_an_outside_file_is_neither_chmodded_nor_kept(root: Path) -> None:
    outside = root.parent / "outside" / "theirs.env"
    outside.write_text("QWENOPS_API_KEY=theirs-1234\n")
    outside.chmod(0o644)
    env = root / ENV_PATH
    env.parent.mkdir(parents=True)
    env.symlink_to(outside)
    assert f"{env} is a symlink" in refused(root)
    assert refused(root, "--gateway") == refused(root)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


@pytest.mark.parametrize("linked", ["etc", "etc/systemd", "etc/systemd/system", "etc/qwenops", "etc/sysusers.d",
                                    "etc/modules-load.d"])
def test_a_symlinked_directory_under_the_root_is_refused_before_anything_is_written(root: Path, linked: str) -> None:
    (root / linked).parent.mkdir(parents=True, exist_ok=True)
    (root / linked).symlink_to(root.parent / "outside")
    line = refused(root)
    assert f"{root}/{linked} is a symlink" in line
    assert list((root.parent / "outside").iterdir()) == []


def test_a_symlinked_unit_file_is_refused(root: Path) -> None:
    (root / UNIT).parent.mkdir(parents=True)
    (root / UNIT).symlink_to(root.parent / "outside" / "qwenops.service")
    assert f"{root / UNIT} is a symlink" in refused(root)
    assert not (root.parent / "outside" / "qwenops.service").exists()


def test_the_root_itself_may_be_a_symlink(root: Path) -> None:
    """The root is what the caller named: it is followed once; only what is under it must be real."""
    link = root.parent / "link"
    link.symlink_to(root)
    result = install_systemd("4090d", root=link, run=never_run)
    assert (root / UNIT).is_file() and (root / ENV_PATH).is_file()
    assert result.unit == str(link / UNIT)


def test_a_symlink_swapped_in_after_the_plan_is_refused_when_acting(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    carry_out = install_module._Plan.carry_out

    def swap_then_carry_out(plan: install_module._Plan) -> None:
        (root / "etc/systemd").mkdir(parents=True)
        (root / "etc/systemd/system").symlink_to(root.parent / "outside")
        carry_out(plan)

    monkeypatch.setattr(install_module._Plan, "carry_out", swap_then_carry_out)
    with pytest.raises(BadInputError) as caught:
        install_systemd("4090d", root=root, run=never_run)
    assert f"{root}/etc/systemd/system is a symlink" in caught.value.one_line()
    assert list((root.parent / "outside").iterdir()) == []


def test_an_env_file_that_appears_after_the_plan_is_never_overwritten(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    carry_out = install_module._Plan.carry_out
    theirs = root.parent / "outside" / "theirs.env"

    def appear_then_carry_out(plan: install_module._Plan) -> None:
        (root / ENV_PATH).parent.mkdir(parents=True)
        (root / ENV_PATH).symlink_to(theirs)
        carry_out(plan)

    monkeypatch.setattr(install_module._Plan, "carry_out", appear_then_carry_out)
    with pytest.raises(BadInputError) as caught:
        install_systemd("4090d", root=root, run=never_run)
    assert f"{root / ENV_PATH} appeared while install was writing it" in caught.value.one_line()
    assert not theirs.exists() and (root / ENV_PATH).is_symlink()
    assert sorted(p.name for p in (root / ENV_PATH).parent.iterdir()) == ["qwenops.env"]  # no temporary left


# ------------------------------------------------------------------------- what sits at the env file's path


def test_an_env_file_owned_by_another_user_is_refused_not_kept(root: Path) -> None:
    env = env_at(root, mode=0o644)
    os.chown(env, NOBODY, NOBODY)
    line = refused(root)
    assert f"{env} is owned by uid {NOBODY}" in line
    assert stat.S_IMODE(env.stat().st_mode) == 0o644


def test_an_env_file_with_another_hard_link_is_refused(root: Path) -> None:
    env = env_at(root)
    os.link(env, root.parent / "outside" / "copy.env")
    assert f"{env} has 2 hard links" in refused(root)


@pytest.mark.parametrize(("make", "kind"), [
    (lambda p: p.mkdir(), "a directory"),
    (os.mkfifo, "a FIFO"),
    (lambda p: os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 3)), "a character device"),
])
def test_an_env_file_path_that_is_not_a_regular_file_is_refused(root: Path, make: object, kind: str) -> None:
    env = root / ENV_PATH
    env.parent.mkdir(parents=True)
    try:
        make(env)  # type: ignore[operator]
    except PermissionError:
        pytest.skip("this container may not make device nodes")
    line = refused(root)
    assert f"{env} is {kind}" in line


@pytest.mark.timeout(20)
def test_a_fifo_at_the_env_file_path_never_blocks_the_gateway_install(root: Path) -> None:
    env = root / ENV_PATH
    env.parent.mkdir(parents=True)
    os.mkfifo(env)
    assert f"{env} is a FIFO" in refused(root, "--gateway")


def test_an_env_file_too_big_or_not_text_is_refused(root: Path) -> None:
    env = env_at(root, "QWENOPS_API_KEY=k\n" + "#" * (1024 * 1024) + "\n")
    assert "bytes" in refused(root)
    env.write_bytes(b"QWENOPS_API_KEY=k\n\x00QWENOPS_GATEWAY_TOKEN=\n")
    assert "NUL" in refused(root, "--gateway")
    env.write_bytes(b"QWENOPS_API_KEY=\xff\n")
    assert "not UTF-8" in refused(root)


# ---------------------------------------------------------------------- the directories install writes in


def test_a_world_writable_directory_under_the_root_is_refused(root: Path) -> None:
    env_at(root)
    (root / "etc/qwenops").chmod(0o777)
    assert f"{root}/etc/qwenops is writable by others (mode 777)" in refused(root)


def test_a_directory_writable_by_another_group_is_refused_and_roots_group_is_not(root: Path) -> None:
    (root / "etc/systemd/system").mkdir(parents=True)
    os.chown(root / "etc/systemd", -1, 12345)
    (root / "etc/systemd").chmod(0o775)
    assert f"{root}/etc/systemd is writable by group 12345 (mode 775)" in refused(root)
    os.chown(root / "etc/systemd", -1, 0)
    install_systemd("4090d", root=root, run=never_run)


def test_a_directory_owned_by_another_user_is_refused(root: Path) -> None:
    (root / "etc").mkdir()
    os.chown(root / "etc", NOBODY, NOBODY)
    assert f"{root}/etc is owned by uid {NOBODY}" in refused(root)


def test_new_directories_are_0755_whatever_the_umask(root: Path) -> None:
    old = os.umask(0o077)
    try:
        install_systemd("4090d", root=root, run=never_run)
    finally:
        os.umask(old)
    assert stat.S_IMODE((root / "etc/qwenops").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / ENV_PATH).stat().st_mode) == 0o600


# ------------------------------------------------------------------------------------------ --root itself


@pytest.mark.parametrize(("value", "says"), [
    ("", "--root: the empty string names no directory"),
    ("relative/dir", "--root: relative/dir is not an absolute path"),
    ("/tmp/a\nb", "--root: its name holds a line break"),
    ("/tmp/a\x1b[31mb", "--root: its name holds the control character U+001B"),
    ("/" + "a" * 5000, "--root: its name is 5001 bytes long"),
    ("/nonexistent-qwenops-root", "--root: /nonexistent-qwenops-root does not exist"),
])
def test_bad_root_values_are_one_line_and_exit_2(
        value: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for command in (["install", "systemd", "-p", "4090d"], ["uninstall", "systemd", "--purge"]):
        result = invoke(*command, "--root", value)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {says}") and len(result.stderr.splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []  # never the current directory


def test_a_root_that_is_a_file_or_has_a_too_long_name_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = invoke("install", "systemd", "-p", "4090d", "--root", str(tmp_path / "file"))
    assert result.exit_code == 2 and "is not a directory" in result.stderr
    result = invoke("install", "systemd", "-p", "4090d", "--root", str(tmp_path / ("a" * 300)))
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.stderr


def test_a_qwenops_bin_with_a_control_character_is_refused(root: Path) -> None:
    line = refused(root, "--qwenops-bin", "/opt/q\nExecStartPre=/bin/evil")
    assert line.startswith("error: --qwenops-bin: its name holds a line break")


# -------------------------------------------------------------------------------------------- uninstall


def test_uninstall_purge_refuses_a_symlinked_state_dir_and_removes_nothing(root: Path) -> None:
    install_systemd("4090d", root=root, run=never_run)
    weights = root.parent / "outside" / "weights"
    weights.mkdir()
    (weights / "model.safetensors").write_text("w")
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/qwenops").symlink_to(weights)
    line = refused(root, "--purge", command=("uninstall", "systemd"))
    assert f"{root}/var/lib/qwenops is a symlink" in line
    assert (weights / "model.safetensors").exists() and (root / UNIT).exists()


def test_uninstall_refuses_a_symlinked_unit_directory(root: Path) -> None:
    outside = root.parent / "outside"
    (outside / "qwenops.service").write_text("[Unit]\n")
    (root / "etc/systemd").mkdir(parents=True)
    (root / "etc/systemd/system").symlink_to(outside)
    assert f"{root}/etc/systemd/system is a symlink" in refused(root, command=("uninstall", "systemd"))
    assert (outside / "qwenops.service").exists()


def test_uninstall_purge_refuses_an_env_file_path_that_is_a_directory(root: Path) -> None:
    (root / ENV_PATH).mkdir(parents=True)
    assert f"{root / ENV_PATH} is a directory" in refused(root, "--purge", command=("uninstall", "systemd"))


def test_uninstall_purge_removes_a_tree_without_following_its_symlinks(root: Path) -> None:
    install_systemd("4090d", root=root, run=never_run)
    keep = root.parent / "outside" / "keep"
    keep.mkdir()
    (keep / "file").write_text("x")
    cache = root / "var/cache/qwenops/huggingface/hub"
    cache.mkdir(parents=True)
    (cache / "link").symlink_to(keep)
    (cache / "blob").write_text("w")
    uninstall_systemd(root=root, purge=True, run=never_run)
    assert not (root / "var/cache/qwenops").exists() and (keep / "file").exists()


# ------------------------------------------------------------------------ the key systemd reads is the key


def systemd_reads(text: str) -> dict[str, str]:
    return systemd_env(text)


@pytest.mark.parametrize(("text", "now", "before_254"), [
    ("A=1\nA=2\n", {"A": "2"}, {"A": "2"}),
    ("A=1\n# c \\\nA=2\n", {"A": "2"}, {"A": "1"}),  # v254 stopped continuing a comment on a backslash
    ("; A=3\nA=4", {"A": "4"}, {"A": "4"}),
    ('A="x\ny"\n', {"A": "x\ny"}, {"A": "x\ny"}),
    ("A=x \\\n y\n", {"A": "x  y"}, {"A": "x  y"}),
    ("  A = v \n", {"A": "v"}, {"A": "v"}),
    ("A='a b'c\n", {"A": "a bc"}, {"A": "a bc"}),
    ("A\nB=1", {"B": "1"}, {"B": "1"}),
    ("A=1\rB=2", {"A": "1", "B": "2"}, {"A": "1", "B": "2"}),
    ('A="a\\"b\\q"\n', {"A": 'a"b\\q'}, {"A": 'a"b\\q'}),
    ("A=", {"A": ""}, {"A": ""}),
    ("A=b\\", {"A": "b"}, {"A": "b"}),
    ("export A=1\n", {"export A": "1"}, {"export A": "1"}),
])
def test_the_env_file_is_read_the_way_systemd_reads_it(
        text: str, now: dict[str, str], before_254: dict[str, str]) -> None:
    """Hand-checked against systemd's parse_env_file_internal() (src/basic/env-file.c), v252 and v254+."""
    assert systemd_env(text) == now
    assert systemd_env(text, before_254=True) == before_254


def one_key(env: Path) -> str:
    keys = KEY_LINE.findall(env.read_text())
    assert len(keys) == 1, keys
    return str(keys[0])


def test_a_rendered_env_file_with_a_second_key_line_gets_the_new_key_where_systemd_reads_it(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The description `x\\nQWENOPS_API_KEY=` (refused by the profile's validation now, but install does
    not rely on it): the new key went into the first line, an empty one stayed last."""
    from qwenops.render import systemd

    rendered = systemd.env_file

    def hostile(profile: object) -> str:
        lines = rendered(profile).splitlines(keepends=True)  # type: ignore[arg-type]
        return "".join(lines[:3]) + "# Profile: x\nQWENOPS_API_KEY=\n" + "".join(lines[3:])

    monkeypatch.setattr(systemd, "env_file", hostile)
    install_systemd("4090d", root=root, gateway=True, run=never_run)
    text = (root / ENV_PATH).read_text()
    key = one_key(root / ENV_PATH)
    assert len(key) >= 40 and systemd_reads(text)["QWENOPS_API_KEY"] == key
    assert systemd_reads(text)["QWENOPS_GATEWAY_TOKEN"] == TOKEN_LINE.findall(text)[0] != ""


def test_a_rendered_env_file_whose_key_line_a_quote_swallows_is_refused(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quote that never closes: systemd reads everything after it as FOO's value, so no line would set
    the key (a quote that closes later is fine: that assignment is removed, the real line gets the key)."""
    from qwenops.render import systemd

    monkeypatch.setattr(systemd, "env_file", lambda profile: "FOO='\nQWENOPS_API_KEY=\nQWENOPS_GATEWAY_TOKEN=\n")
    line = refused(root)
    assert line.startswith("error: profile: ") and "QWENOPS_API_KEY" in line


def test_a_rendered_key_assignment_with_a_quote_closing_later_is_replaced(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenops.render import systemd

    rendered = systemd.env_file
    monkeypatch.setattr(systemd, "env_file",
                        lambda profile: "# Profile: x\nQWENOPS_API_KEY=\"\n# a \"quote\n" + rendered(profile))
    install_systemd("4090d", root=root, run=never_run)
    text = (root / ENV_PATH).read_text()
    assert systemd_reads(text)["QWENOPS_API_KEY"] == one_key(root / ENV_PATH) != ""
    assert text.startswith("# Profile: x\n# qwenops.env")  # the dead assignment went, all its lines (`quote` too)


def test_a_token_after_a_continued_line_is_added_where_systemd_reads_it(root: Path) -> None:
    text = "QWENOPS_API_KEY=sk-mine-1234\nHF_TOKEN=abc\\\nQWENOPS_GATEWAY_TOKEN=\n"
    env = env_at(root, text)
    install_systemd("4090d", root=root, gateway=True, run=never_run)
    now = env.read_text()
    token = TOKEN_LINE.findall(now)[-1]
    assert now == f"{text}QWENOPS_GATEWAY_TOKEN={token}\n" and len(token) >= 40
    assert systemd_reads(now)["QWENOPS_GATEWAY_TOKEN"] == token
    assert systemd_reads(now)["HF_TOKEN"] == systemd_reads(text)["HF_TOKEN"]


def test_a_token_after_a_comment_ending_in_a_backslash_is_read_by_old_and_new_systemd(root: Path) -> None:
    text = "QWENOPS_API_KEY=sk-mine-1234\n# note \\"
    env = env_at(root, text)
    install_systemd("4090d", root=root, gateway=True, run=never_run)
    now = env.read_text()
    token = TOKEN_LINE.findall(now)[0]
    assert now == f"{text}\n\nQWENOPS_GATEWAY_TOKEN={token}\n"
    for before_254 in (False, True):
        assert systemd_env(now, before_254=before_254)["QWENOPS_GATEWAY_TOKEN"] == token


def test_a_token_cannot_be_added_after_an_open_quote(root: Path) -> None:
    env_at(root, 'QWENOPS_API_KEY=sk-mine-1234\nHF_TOKEN="abc\n')
    line = refused(root, "--gateway")
    assert "QWENOPS_GATEWAY_TOKEN" in line


@pytest.mark.parametrize("text", [
    "# note \\\nQWENOPS_API_KEY=sk-ambiguous-1234\n",  # systemd 254 reads it, 252 does not
    "export QWENOPS_API_KEY=sk-ambiguous-1234\n",  # qwenops reads it, systemd does not
    'QWENOPS_API_KEY="sk-ambiguous\\t1234"\n',  # qwenops reads a tab, systemd a backslash and a t
    "QWENOPS_API_KEY=${HOME}-sk-ambiguous\n",  # qwenops expands it, systemd does not
])
def test_a_kept_key_that_systemd_and_qwenops_read_differently_is_refused(root: Path, text: str) -> None:
    env_at(root, text)
    line = refused(root)
    assert "QWENOPS_API_KEY" in line and "sk-ambiguous" not in line


def test_a_kept_file_without_an_effective_key_says_so(root: Path) -> None:
    env = env_at(root, "QWENOPS_API_KEY=sk-shadowed-1234\nQWENOPS_API_KEY=\n")
    result = install_systemd("4090d", root=root, run=never_run)
    assert [(a.verb, a.detail) for a in result.actions if a.target == str(env)] == [
        ("keep", "exists; it sets no QWENOPS_API_KEY: the server takes requests without a key")]


def test_the_written_key_is_checked_after_writing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read = install_tree._read_env

    def tampered(dir_fd: int, name: str) -> tuple[bytes, os.stat_result]:
        data, st = read(dir_fd, name)
        return data + b"QWENOPS_API_KEY=someone-elses\n", st

    monkeypatch.setattr(install_tree, "_read_env", tampered)
    with pytest.raises(CheckFailedError) as caught:
        install_systemd("4090d", root=root, run=never_run)
    assert "QWENOPS_API_KEY" in caught.value.one_line() and "someone-elses" not in caught.value.one_line()


def test_an_added_token_leaves_no_temporary_file_and_keeps_the_mode(root: Path) -> None:
    env = env_at(root, "QWENOPS_API_KEY=sk-mine-1234\n")
    result = install_systemd("4090d", root=root, gateway=True, run=never_run)
    assert ("add", TOKEN_DETAIL) in [(a.verb, a.detail) for a in result.actions]
    assert sorted(p.name for p in env.parent.iterdir()) == ["qwenops.env"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and env.stat().st_uid == os.geteuid()
