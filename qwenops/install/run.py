"""`qwenops install|uninstall systemd`: put the rendered unit on a host and start it, or take it away.

Install writes four files and runs four commands, in this order, each one an `Action` in the
result (`--dry-run` returns the same list and does nothing):

    /etc/systemd/system/qwenops.service     the unit `render systemd` prints (0644)
    /etc/qwenops/qwenops.env                QWENOPS_API_KEY (a new random key) and overrides (0600, root);
                                            an existing file is kept, its key untouched, its mode made 0600
    /etc/sysusers.d/qwenops.conf            the service user and its video/render groups
    /etc/modules-load.d/qwenops-nvidia.conf nvidia-uvm at boot, so the unit's device list finds it
    systemd-sysusers, modprobe nvidia-uvm (best effort), systemctl daemon-reload, systemctl enable --now

`--gateway` adds the relay beside it: /etc/systemd/system/qwenops-gateway.service (the unit
`render gateway-systemd` prints, 0644, written after qwenops.service) and a QWENOPS_GATEWAY_TOKEN in
the env file (a new random one, never shown: a new file gets it with the key; an existing file
without one gets it added, every other line kept; an existing token is kept), then
`systemctl enable --now --no-block qwenops-gateway.service` after qwenops.service's.

`--root DIR` writes under DIR and runs nothing (image builds, tests): systemd-sysusers.service
creates the user at that system's first boot. Uninstall stops and disables the units (the gateway's
too whenever it is there, flag or not) and removes the files; `--purge` also removes the env file
(the key and the token), the state and cache directories (the weights) and the user.

Install runs as root and writes where others may have left things, so it plans first and acts
after: every path is checked before anything is written, removed or run, a refusal (exit 2, one
line naming the path and what is wrong) leaves everything as it was, and `--dry-run` shows the same
refusals. The rules (docs/deploy.md, docs/security.md):

- The root (`/`, or `--root DIR`: absolute, no control characters) is opened once, following a
  symlink if it is one: it is the directory the caller named. Everything under it is reached from
  that open directory one name at a time (dir_fd, O_NOFOLLOW), never through a symlink: a symlink
  under the root is refused, and so is a directory owned by anyone but root (or this user), or
  writable by others or by a group that is not root's (or this user's).
- A file is written to a new temporary file beside it (O_CREAT|O_EXCL|O_NOFOLLOW, its final mode from
  the start) and renamed over the old one; a new env file is linked into place instead, so one that
  appeared meanwhile is never overwritten. Only regular files are replaced or removed.
- A kept env file must be a regular file with one link, owned by root (or this user), UTF-8 without
  NUL and at most MAX_ENV_FILE_BYTES; its mode is made 0600.
- The key and the token are set as data. The env file is parsed the way systemd's EnvironmentFile=
  reads it (before and since systemd 254, which stopped continuing a comment on a trailing
  backslash) and the way qwenops reads it (python-dotenv): the last assignment is replaced and the
  earlier ones removed, or a line added, and the result is checked before it is written and re-read
  after: every reader gets the new value and every other variable keeps its value. A kept key or
  token the readers disagree on is refused.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from qwenops.errors import BadInputError, CheckFailedError
from qwenops.install.envfile import assign, kept_value, readings_of
from qwenops.install.tree import Tree, kind, under
from qwenops.untrusted import control_character

if TYPE_CHECKING:
    from qwenops.config.profile import Profile

UNIT_PATH = "/etc/systemd/system/qwenops.service"
GATEWAY_UNIT_PATH = "/etc/systemd/system/qwenops-gateway.service"
SYSUSERS_PATH = "/etc/sysusers.d/qwenops.conf"
MODULES_PATH = "/etc/modules-load.d/qwenops-nvidia.conf"
STATE_DIRS = ("/var/lib/qwenops", "/var/cache/qwenops")
# ProtectHome= hides these from the service: a qwenops installed there cannot be started.
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

API_KEY = "QWENOPS_API_KEY"
TOKEN_DETAIL = "QWENOPS_GATEWAY_TOKEN: new random token (not shown)"

# Linux's PATH_MAX, the longest path a system call takes, its final NUL included.
_PATH_MAX = 4096


class Action(BaseModel):
    """One step: write, keep, chmod, add (a line), remove (a file) or run, skip (a command)."""

    model_config = ConfigDict(frozen=True)

    verb: str
    target: str
    detail: str = ""


class InstallResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    command: str  # "install" or "uninstall"
    profile: str | None
    root: str | None
    dry_run: bool
    unit: str
    env_file: str
    actions: tuple[Action, ...]
    gateway_unit: str | None = None  # qwenops-gateway.service, when installed (or removed) with the server's


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")


def sysusers_conf() -> str:
    from qwenops.render.deploy import SERVICE_USER, STATE_DIR

    return (
        "# qwenops.service's user, created by systemd-sysusers (qwenops install systemd).\n"
        f'u {SERVICE_USER} - "qwenops service" {STATE_DIR} /usr/sbin/nologin\n'
        "# The NVIDIA and DRM device nodes belong to these groups on some distributions (created if missing).\n"
        f"m {SERVICE_USER} video\n"
        f"m {SERVICE_USER} render\n"
    )


MODULES_CONF = (
    "# Load CUDA's unified-memory driver at boot: qwenops.service's device allow-list (char-nvidia-uvm)\n"
    "# is resolved when the unit starts, and its sandbox cannot load modules itself.\n"
    "nvidia-uvm\n"
)


def _new_token() -> str:
    """256 random bits, base64url: 43 characters of A-Z a-z 0-9 - _, which the gateway's token rules allow
    and every env-file reader takes as they are (no quote, backslash, $ or space)."""
    return secrets.token_urlsafe(32)


# ---------------------------------------------------------------------------------------- checks and plan


def _check_text(value: str, field: str, hint: str) -> None:
    what = control_character(value)
    if what is not None:
        raise BadInputError(f"its name holds {what}", field=field, hint=hint)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError("its name is not UTF-8", field=field, hint=hint) from None
    if len(value.encode("utf-8")) >= _PATH_MAX:
        raise BadInputError(f"its name is {len(value.encode('utf-8'))} bytes long; a path is at most "
                            f"{_PATH_MAX - 1}", field=field, hint=hint)


def _root_path(root: Path | str | None) -> Path | None:
    """--root as given (a string from the command line: '' is not '.'), or refused: empty, relative, control
    characters, not UTF-8, longer than a path may be."""
    if root is None:
        return None
    text = root if isinstance(root, str) else str(root)
    hint = "name the directory to write under from /, e.g. --root /srv/image"
    if not text:
        raise BadInputError("the empty string names no directory", field="--root", hint=hint)
    _check_text(text, "--root", hint)
    if not Path(text).is_absolute():
        raise BadInputError(f"{text} is not an absolute path", field="--root", hint=hint)
    return Path(text)


def _check_qwenops_bin(qwenops_bin: str, *, on_host: bool) -> None:
    path = Path(qwenops_bin)
    hint = ("install qwenops into /opt/qwenops (python3 -m venv /opt/qwenops && "
            "/opt/qwenops/bin/pip install '.[gpu]'), or pass --qwenops-bin")
    _check_text(qwenops_bin, "--qwenops-bin", hint)
    if not path.is_absolute():
        raise BadInputError(f"{qwenops_bin} is not an absolute path", field="--qwenops-bin", hint=hint)
    hidden = next((d for d in HIDDEN_BY_PROTECT_HOME if path.is_relative_to(d)), None)
    if hidden is not None:
        raise BadInputError(f"{qwenops_bin} is under {hidden}, which the unit's ProtectHome= hides from the service",
                            field="--qwenops-bin", hint=hint)
    if on_host and not os.access(path, os.X_OK):
        raise BadInputError(f"{qwenops_bin} is not an executable file", field="--qwenops-bin", hint=hint)


def _preflight(root: Path | None, dry_run: bool, commands: Sequence[str]) -> None:
    if root is not None:
        os.close(Tree(root).open_root())
        return
    if not dry_run and os.geteuid() != 0:
        raise BadInputError("writing /etc needs root", field="user", hint="run it with sudo, or try --dry-run")
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        raise BadInputError(f"{', '.join(missing)} not found: this host does not run systemd", field="host",
                            hint="run qwenops in Docker instead: docker compose -f docker/compose.yaml up -d")


class _Plan:
    """Collects the actions, each path checked as it is planned; `carry_out` then does them in order,
    unless this is a dry run (which therefore refuses exactly what the real run refuses)."""

    def __init__(self, root: Path | None, dry_run: bool, run: Runner) -> None:
        self.root, self.dry_run, self._run = root, dry_run, run
        self.tree = Tree(root)
        self.steps: list[tuple[Action, Callable[[], None] | None]] = []

    @property
    def actions(self) -> list[Action]:
        return [action for action, _ in self.steps]

    def add(self, verb: str, path: str, detail: str = "", do: Callable[[], None] | None = None) -> None:
        self.steps.append((Action(verb=verb, target=self.tree.shown(path), detail=detail), do))

    def write(self, path: str, text: str, mode: int, detail: str = "", *, new: bool = False,
              sets: dict[str, str] | None = None, expect: os.stat_result | None = None,
              verb: str = "write") -> None:
        """PATH with TEXT (NEW: a new file; EXPECT: a rewrite of that file); SETS: the variables the written
        env file must then give every reader, re-read to check."""
        if expect is None:
            self.tree.inspect_file(path)

        def do() -> None:
            self.tree.write(path, text, mode, new=new, expect=expect)
            if sets:
                self._check_written(path, sets)

        self.add(verb, path, detail or f"mode {mode:o}", do)

    def _check_written(self, path: str, sets: dict[str, str]) -> None:
        env = self.tree.env_file(path, dry_run=False)
        readings = readings_of(env.text) if env is not None and env.text is not None else {}
        for variable, value in sets.items():
            if not readings or any(r.get(variable) != value for r in readings.values()):
                raise CheckFailedError(f"{self.tree.shown(path)} does not set the new {variable} after install "
                                       "wrote it (did another process change it?)", field="install",
                                       hint="run install again, then check the file")

    def chmod_private(self, path: str, st: os.stat_result, why: str) -> None:
        mode = stat.S_IMODE(st.st_mode)
        self.add("chmod", path, f"{mode:o} -> 600{why}", lambda: self.tree.chmod_private(path, st))

    def remove(self, path: str, *, tree: bool = False) -> None:
        name = path.rsplit("/", 1)[1]
        with self.tree.parent(path, create=False) as fd:
            st = None if fd is None else self.tree.lstat(fd, name, path)
            if fd is None or st is None:
                return
            if stat.S_ISLNK(st.st_mode):
                raise self.tree.symlink(fd, name, path)
            if tree and not stat.S_ISDIR(st.st_mode):
                raise self.tree.refusal(path, f"is {kind(st.st_mode)}, not a directory", hint="move it away")
            if not tree:
                self.tree.check_file(fd, name, path, st)
        found: os.stat_result = st
        self.add("remove", path, "", lambda: self.tree.remove(path, found, tree=tree))

    def command(self, argv: Sequence[str], *, required: bool = True, why: str = "") -> None:
        shown = " ".join(argv)
        if self.root is not None:
            self.steps.append((Action(verb="skip", target=shown, detail="--root: nothing runs on this host"), None))
            return

        def do() -> None:
            done = self._run(argv)
            if done.returncode != 0 and required:
                last = (done.stderr or done.stdout or "").strip().splitlines()
                unit = argv[-1].removesuffix(".service") if argv[-1].endswith(".service") else "qwenops"
                raise CheckFailedError(f"`{shown}` failed (exit {done.returncode})" + (f": {last[-1]}" if last else ""),
                                       field="install", hint=f"see journalctl -u {unit} and systemctl status {unit}")

        self.steps.append((Action(verb="run", target=shown, detail=why), do))

    def carry_out(self) -> None:
        if self.dry_run:
            return
        for action, do in self.steps:
            if do is None:
                continue
            try:
                do()
            except OSError as exc:  # a bug's path, still one line: every expected one is mapped where it happens
                raise BadInputError(f"cannot {action.verb} {action.target}: {exc.strerror or exc}",
                                    field=self.tree.field) from None


def _new_env_text(profile: Profile, values: dict[str, str]) -> str:
    """The rendered env file with VALUES (a new key, and with --gateway a token) set as data."""
    from qwenops.render.systemd import env_file

    text = env_file(profile)
    for variable, value in values.items():
        assigned = assign(text, variable, value)
        if assigned is None:
            raise BadInputError(f"the env file rendered for profile {profile.name} leaves no line where every "
                                f"reader would read {variable} (a quote or backslash in the profile's text?)",
                                field="profile", hint="check the profile's description and other text fields")
        text = assigned
    return text


def _refuse_exposed(mode: int, shown: str, secrets: list[str]) -> None:
    """An env file whose secrets its group or others could read: they may have been copied, so install does not keep
    them by making the file private now (audit 9), as it keeps no key from a file another user owns."""
    if secrets and mode & 0o044:
        names = " and ".join(secrets)
        raise BadInputError(f"{shown} holds {names} but its group or others could read it (mode {mode & 0o777:o}): "
                            "they may have been copied", field="env_file",
                            hint=f"delete the {names} line(s) and install writes new ones; or, if no one else could "
                            f"have read it, chmod 600 {shown} and run install again")


def _plan_env(plan: _Plan, profile: Profile, *, gateway: bool) -> None:
    """The env file's actions: a new one with a new key (and token), or the existing one checked, kept,
    made 0600, and with --gateway given a token it lacks."""
    from qwenops.gateway.config import TOKEN_VARIABLE, valid_token
    from qwenops.render.deploy import ENV_FILE

    shown = plan.tree.shown(ENV_FILE)
    existing = plan.tree.env_file(ENV_FILE, dry_run=plan.dry_run)
    if existing is None:
        values = {API_KEY: _new_token()} | ({TOKEN_VARIABLE: _new_token()} if gateway else {})
        plan.write(ENV_FILE, _new_env_text(profile, values), 0o600, "mode 600, with a new random QWENOPS_API_KEY"
                   + (" and QWENOPS_GATEWAY_TOKEN (not shown)" if gateway else ""), new=True, sets=values)
        return
    if existing.text is None:  # a dry run as a user who may not read it
        if existing.st.st_mode & 0o7077:
            plan.chmod_private(ENV_FILE, existing.st, " (it holds the key)")
        else:
            plan.add("keep", ENV_FILE, "exists; its key is kept (this user cannot read it)")
        if gateway:
            plan.add("add", ENV_FILE, f"{TOKEN_DETAIL}, unless it has one (this user cannot read it)")
        return
    readings = readings_of(existing.text)
    key = kept_value(readings, API_KEY, shown)
    _refuse_exposed(existing.st.st_mode, shown, [name for name, value in ((API_KEY, key), (
        TOKEN_VARIABLE, kept_value(readings, TOKEN_VARIABLE, shown))) if value])
    if existing.st.st_mode & 0o7077:
        plan.chmod_private(ENV_FILE, existing.st, " (it holds the key)" if key else "")
    elif key:
        plan.add("keep", ENV_FILE, "exists; its key is kept")
    else:
        plan.add("keep", ENV_FILE, f"exists; it sets no {API_KEY}: the server takes requests without a key")
    if not gateway:
        return
    token = kept_value(readings, TOKEN_VARIABLE, shown)
    if token:
        if not valid_token(token):
            raise BadInputError(f"{shown} holds a {TOKEN_VARIABLE} the gateway refuses (it must be 16 to 256 "
                                "characters of A-Z a-z 0-9 . _ ~ -)", field=TOKEN_VARIABLE,
                                hint="replace it, or delete its line and install writes a new one")
        plan.add("keep", ENV_FILE, f"its {TOKEN_VARIABLE} is kept")
        return
    new_token = _new_token()
    text = assign(existing.text, TOKEN_VARIABLE, new_token)
    if text is None:
        raise BadInputError(f"{shown} has no line where systemd and qwenops would both read a {TOKEN_VARIABLE} "
                            "install adds, without changing another variable (a quote left open?)",
                            field=TOKEN_VARIABLE, hint=f"fix the file, or add a {TOKEN_VARIABLE}=TOKEN line yourself")
    plan.write(ENV_FILE, text, 0o600, TOKEN_DETAIL, sets={TOKEN_VARIABLE: new_token}, expect=existing.st,
               verb="add")


def install_systemd(profile_name: str | None, *, root: Path | str | None = None, dry_run: bool = False,
                    qwenops_bin: str | None = None, gateway: bool = False, run: Runner = _run) -> InstallResult:
    """Install and start qwenops.service (and with GATEWAY qwenops-gateway.service) for PROFILE_NAME
    (see the module docstring). Everything is planned and checked before anything is done."""
    from qwenops.config.loader import load_profile
    from qwenops.render.deploy import ENV_FILE, QWENOPS_BIN
    from qwenops.render.systemd import GATEWAY_UNIT_NAME, UNIT_NAME, gateway_unit, systemd_unit

    root_path = _root_path(root)
    profile = load_profile(profile_name, env={})
    qwenops_bin = qwenops_bin or QWENOPS_BIN
    _check_qwenops_bin(qwenops_bin, on_host=root_path is None)
    unit = systemd_unit(profile, qwenops_bin=qwenops_bin)  # a CPU profile is refused here
    _preflight(root_path, dry_run, ("systemctl", "systemd-sysusers"))
    plan = _Plan(root_path, dry_run, run)
    plan.write(UNIT_PATH, unit, 0o644)
    if gateway:
        plan.write(GATEWAY_UNIT_PATH, gateway_unit(profile, qwenops_bin=qwenops_bin), 0o644)
    _plan_env(plan, profile, gateway=gateway)
    plan.write(SYSUSERS_PATH, sysusers_conf(), 0o644)
    plan.write(MODULES_PATH, MODULES_CONF, 0o644)
    plan.command(["systemd-sysusers", SYSUSERS_PATH], why="create the qwenops user and groups")
    plan.command(["modprobe", "nvidia-uvm"], required=False, why="best effort: the driver may load it later")
    plan.command(["systemctl", "daemon-reload"])
    # --no-block: a GPU start takes minutes; journalctl -u qwenops -f shows it becoming ready.
    plan.command(["systemctl", "enable", "--now", "--no-block", UNIT_NAME])
    if gateway:
        # --no-block too: After=qwenops.service holds its start until the server is ready.
        plan.command(["systemctl", "enable", "--now", "--no-block", GATEWAY_UNIT_NAME])
    plan.carry_out()
    return InstallResult(command="install", profile=profile.name, root=str(root_path) if root_path else None,
                         dry_run=dry_run, unit=str(under(root_path, UNIT_PATH)),
                         env_file=str(under(root_path, ENV_FILE)), actions=tuple(plan.actions),
                         gateway_unit=str(under(root_path, GATEWAY_UNIT_PATH)) if gateway else None)


def uninstall_systemd(*, root: Path | str | None = None, dry_run: bool = False, purge: bool = False,
                      run: Runner = _run) -> InstallResult:
    """Stop, disable and remove qwenops.service (and qwenops-gateway.service, when there); with PURGE also
    its key, data and user. Every path is checked before anything is stopped or removed."""
    from qwenops.render.deploy import ENV_FILE, SERVICE_USER
    from qwenops.render.systemd import GATEWAY_UNIT_NAME, UNIT_NAME

    root_path = _root_path(root)
    _preflight(root_path, dry_run, ("systemctl",))
    plan = _Plan(root_path, dry_run, run)
    gateway = plan.tree.exists(GATEWAY_UNIT_PATH)
    if gateway:  # the relay first: its chats drain while the server still answers them
        plan.command(["systemctl", "disable", "--now", GATEWAY_UNIT_NAME], why="stop it (drained) and disable it")
    if plan.tree.exists(UNIT_PATH):
        plan.command(["systemctl", "disable", "--now", UNIT_NAME], why="stop it (drained) and disable it")
    plan.remove(GATEWAY_UNIT_PATH)
    plan.remove(UNIT_PATH)
    plan.remove(SYSUSERS_PATH)
    plan.remove(MODULES_PATH)
    plan.command(["systemctl", "daemon-reload"])
    if purge:
        plan.remove(ENV_FILE)
        for directory in STATE_DIRS:
            plan.remove(directory, tree=True)
        plan.command(["userdel", SERVICE_USER], required=False, why="the service user")
    plan.carry_out()
    return InstallResult(command="uninstall", profile=None, root=str(root_path) if root_path else None,
                         dry_run=dry_run, unit=str(under(root_path, UNIT_PATH)),
                         env_file=str(under(root_path, ENV_FILE)), actions=tuple(plan.actions),
                         gateway_unit=str(under(root_path, GATEWAY_UNIT_PATH)) if gateway else None)
