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
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from qwenops.errors import BadInputError, CheckFailedError

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

# An assignment of nothing (the rendered `QWENOPS_GATEWAY_TOKEN=`): the new token is written there.
_EMPTY_TOKEN = re.compile(r"^(?:export[ \t]+)?QWENOPS_GATEWAY_TOKEN[ \t]*=[ \t]*$", re.MULTILINE)
TOKEN_DETAIL = "QWENOPS_GATEWAY_TOKEN: new random token (not shown)"


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
    """256 random bits, base64url: 43 characters of A-Z a-z 0-9 - _, which the gateway's token rules allow."""
    return secrets.token_urlsafe(32)


def _env_text(profile: Profile, *, gateway: bool = False) -> str:
    """The env file with a new random API key (and with GATEWAY a gateway token) in place of the rendered empty ones."""
    from qwenops.render.systemd import env_file

    text = env_file(profile)
    text = text.replace("\nQWENOPS_API_KEY=\n", f"\nQWENOPS_API_KEY={_new_token()}\n", 1)
    if gateway:
        text = text.replace("\nQWENOPS_GATEWAY_TOKEN=\n", f"\nQWENOPS_GATEWAY_TOKEN={_new_token()}\n", 1)
    return text


def _env_with_token(path: Path) -> str | None:
    """PATH's text with a new gateway token, or None when it holds a valid one (kept).

    The rendered empty `QWENOPS_GATEWAY_TOKEN=` is filled in place, else the line is appended; every
    other line, the API key's included, stays as it is. A token the gateway would refuse is bad input.
    Raises OSError when PATH cannot be read.
    """
    from dotenv import dotenv_values

    from qwenops.gateway.config import TOKEN_VARIABLE, valid_token

    text = path.read_text(encoding="utf-8")
    current = dotenv_values(stream=io.StringIO(text)).get(TOKEN_VARIABLE)
    if current:
        if not valid_token(current):
            raise BadInputError(f"{path} holds a {TOKEN_VARIABLE} the gateway refuses (it must be 16 to 256 "
                                "characters of A-Z a-z 0-9 . _ ~ -)", field=TOKEN_VARIABLE,
                                hint="replace it, or delete its line and install writes a new one")
        return None
    line = f"{TOKEN_VARIABLE}={_new_token()}"
    filled, count = _EMPTY_TOKEN.subn(lambda _: line, text, count=1)
    if count:
        return filled
    return text + ("\n" if text and not text.endswith("\n") else "") + line + "\n"


def _under(root: Path | None, path: str) -> Path:
    return Path(path) if root is None else root / path.lstrip("/")


def _check_qwenops_bin(qwenops_bin: str, *, on_host: bool) -> None:
    path = Path(qwenops_bin)
    hint = ("install qwenops into /opt/qwenops (python3 -m venv /opt/qwenops && "
            "/opt/qwenops/bin/pip install '.[gpu]'), or pass --qwenops-bin")
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
        if not root.is_dir():
            raise BadInputError(f"{root} is not a directory", field="--root", hint="create it first")
        return
    if not dry_run and os.geteuid() != 0:
        raise BadInputError("writing /etc needs root", field="user", hint="run it with sudo, or try --dry-run")
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        raise BadInputError(f"{', '.join(missing)} not found: this host does not run systemd", field="host",
                            hint="run qwenops in Docker instead: docker compose -f docker/compose.yaml up -d")


class _Plan:
    """Collects the actions; carries them out unless this is a dry run."""

    def __init__(self, root: Path | None, dry_run: bool, run: Runner) -> None:
        self.root, self.dry_run, self._run = root, dry_run, run
        self.actions: list[Action] = []

    def write(self, path: str, text: str, mode: int, detail: str = "") -> None:
        target = _under(self.root, path)
        self.actions.append(Action(verb="write", target=str(target), detail=detail or f"mode {mode:o}"))
        if self.dry_run:
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Created with its final mode: the key is never readable by others, even for a moment.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            target.chmod(mode)
        except OSError as exc:
            raise self._cannot_write(target, exc) from None

    def add_private(self, path: str, text: str, detail: str) -> None:
        """Rewrite an existing private file with a line added: a new 0600 file renamed over it, so a
        failure halfway never loses the key it holds."""
        target = _under(self.root, path)
        self.actions.append(Action(verb="add", target=str(target), detail=detail))
        if self.dry_run:
            return
        temporary = target.with_name(f".{target.name}.new")
        try:
            temporary.unlink(missing_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            temporary.chmod(0o600)
            temporary.replace(target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise self._cannot_write(target, exc) from None

    def _cannot_write(self, target: Path, exc: OSError) -> BadInputError:
        return BadInputError(f"cannot write {target}: {exc.strerror}", field="--root" if self.root else "user",
                             hint="choose a directory this user can write" if self.root else "run it as root")

    def keep_private(self, path: str) -> None:
        target = _under(self.root, path)
        mode = target.stat().st_mode & 0o777
        if mode & 0o077:
            self.actions.append(Action(verb="chmod", target=str(target), detail=f"{mode:o} -> 600 (it holds the key)"))
            if not self.dry_run:
                target.chmod(0o600)
        else:
            self.actions.append(Action(verb="keep", target=str(target), detail="exists; its key is kept"))

    def remove(self, path: str, *, tree: bool = False) -> None:
        target = _under(self.root, path)
        if not (target.exists() or target.is_symlink()):
            return
        self.actions.append(Action(verb="remove", target=str(target)))
        if self.dry_run:
            return
        if tree and target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()

    def command(self, argv: Sequence[str], *, required: bool = True, why: str = "") -> None:
        shown = " ".join(argv)
        if self.root is not None:
            self.actions.append(Action(verb="skip", target=shown, detail="--root: nothing runs on this host"))
            return
        self.actions.append(Action(verb="run", target=shown, detail=why))
        if self.dry_run:
            return
        done = self._run(argv)
        if done.returncode != 0 and required:
            last = (done.stderr or done.stdout or "").strip().splitlines()
            unit = argv[-1].removesuffix(".service") if argv[-1].endswith(".service") else "qwenops"
            raise CheckFailedError(f"`{shown}` failed (exit {done.returncode})" + (f": {last[-1]}" if last else ""),
                                   field="install", hint=f"see journalctl -u {unit} and systemctl status {unit}")


def _token_plan(env_path: Path, *, dry_run: bool) -> tuple[str | None, Action | None]:
    """For an existing env file and --gateway: its new text (None: its token is kept), or, in a dry run
    as a user who cannot read it, the action that says so."""
    try:
        return _env_with_token(env_path), None
    except (OSError, UnicodeDecodeError) as exc:
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8 text"
        if not dry_run or not isinstance(exc, PermissionError):
            raise BadInputError(f"cannot read {env_path}: {reason}", field="user",
                                hint="run it as root" if isinstance(exc, PermissionError) else
                                f"fix or remove {env_path}") from None
        return None, Action(verb="add", target=str(env_path),
                            detail=f"{TOKEN_DETAIL}, unless it has one (this user cannot read it)")


def install_systemd(profile_name: str | None, *, root: Path | None = None, dry_run: bool = False,
                    qwenops_bin: str | None = None, gateway: bool = False, run: Runner = _run) -> InstallResult:
    """Install and start qwenops.service (and with GATEWAY qwenops-gateway.service) for PROFILE_NAME
    (see the module docstring)."""
    from qwenops.config.loader import load_profile
    from qwenops.render.deploy import ENV_FILE, QWENOPS_BIN
    from qwenops.render.systemd import GATEWAY_UNIT_NAME, UNIT_NAME, gateway_unit, systemd_unit

    profile = load_profile(profile_name, env={})
    qwenops_bin = qwenops_bin or QWENOPS_BIN
    unit = systemd_unit(profile, qwenops_bin=qwenops_bin)  # a CPU profile is refused here
    _check_qwenops_bin(qwenops_bin, on_host=root is None)
    _preflight(root, dry_run, ("systemctl", "systemd-sysusers"))
    env_path = _under(root, ENV_FILE)
    env_exists = env_path.exists()
    # Read before anything is written: a token the gateway would refuse stops the install here.
    new_env, unread = _token_plan(env_path, dry_run=dry_run) if gateway and env_exists else (None, None)
    plan = _Plan(root, dry_run, run)
    plan.write(UNIT_PATH, unit, 0o644)
    if gateway:
        plan.write(GATEWAY_UNIT_PATH, gateway_unit(profile, qwenops_bin=qwenops_bin), 0o644)
    if not env_exists:
        plan.write(ENV_FILE, _env_text(profile, gateway=gateway), 0o600, "mode 600, with a new random QWENOPS_API_KEY"
                   + (" and QWENOPS_GATEWAY_TOKEN (not shown)" if gateway else ""))
    else:
        plan.keep_private(ENV_FILE)
        if unread is not None:
            plan.actions.append(unread)
        elif new_env is not None:
            plan.add_private(ENV_FILE, new_env, TOKEN_DETAIL)
        elif gateway:
            plan.actions.append(Action(verb="keep", target=str(env_path), detail="its QWENOPS_GATEWAY_TOKEN is kept"))
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
    return InstallResult(command="install", profile=profile.name, root=str(root) if root else None, dry_run=dry_run,
                         unit=str(_under(root, UNIT_PATH)), env_file=str(env_path), actions=tuple(plan.actions),
                         gateway_unit=str(_under(root, GATEWAY_UNIT_PATH)) if gateway else None)


def uninstall_systemd(*, root: Path | None = None, dry_run: bool = False, purge: bool = False,
                      run: Runner = _run) -> InstallResult:
    """Stop, disable and remove qwenops.service (and qwenops-gateway.service, when there); with PURGE also
    its key, data and user."""
    from qwenops.render.deploy import ENV_FILE, SERVICE_USER
    from qwenops.render.systemd import GATEWAY_UNIT_NAME, UNIT_NAME

    _preflight(root, dry_run, ("systemctl",))
    plan = _Plan(root, dry_run, run)
    gateway = _under(root, GATEWAY_UNIT_PATH).exists()
    if gateway:  # the relay first: its chats drain while the server still answers them
        plan.command(["systemctl", "disable", "--now", GATEWAY_UNIT_NAME], why="stop it (drained) and disable it")
    if _under(root, UNIT_PATH).exists():
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
    return InstallResult(command="uninstall", profile=None, root=str(root) if root else None, dry_run=dry_run,
                         unit=str(_under(root, UNIT_PATH)), env_file=str(_under(root, ENV_FILE)),
                         actions=tuple(plan.actions),
                         gateway_unit=str(_under(root, GATEWAY_UNIT_PATH)) if gateway else None)
