"""`qwenops install|uninstall systemd`: put the rendered unit on a host and start it, or take it away.

Install writes four files and runs four commands, in this order, each one an `Action` in the
result (`--dry-run` returns the same list and does nothing):

    /etc/systemd/system/qwenops.service     the unit `render systemd` prints (0644)
    /etc/qwenops/qwenops.env                QWENOPS_API_KEY (a new random key) and overrides (0600, root);
                                            an existing file is kept, its key untouched, its mode made 0600
    /etc/sysusers.d/qwenops.conf            the service user and its video/render groups
    /etc/modules-load.d/qwenops-nvidia.conf nvidia-uvm at boot, so the unit's device list finds it
    systemd-sysusers, modprobe nvidia-uvm (best effort), systemctl daemon-reload, systemctl enable --now

`--root DIR` writes under DIR and runs nothing (image builds, tests): systemd-sysusers.service
creates the user at that system's first boot. Uninstall stops and disables the unit and removes the
files; `--purge` also removes the env file (the key), the state and cache directories (the
weights) and the user.
"""

from __future__ import annotations

import os
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
SYSUSERS_PATH = "/etc/sysusers.d/qwenops.conf"
MODULES_PATH = "/etc/modules-load.d/qwenops-nvidia.conf"
STATE_DIRS = ("/var/lib/qwenops", "/var/cache/qwenops")
# ProtectHome= hides these from the service: a qwenops installed there cannot be started.
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class Action(BaseModel):
    """One step: write, keep, chmod, remove (a file) or run, skip (a command)."""

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


def _env_text(profile: Profile) -> str:
    """The env file with a new random API key in place of the rendered empty one."""
    from qwenops.render.systemd import env_file

    text = env_file(profile)
    return text.replace("\nQWENOPS_API_KEY=\n", f"\nQWENOPS_API_KEY={secrets.token_urlsafe(32)}\n", 1)


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
            raise BadInputError(f"cannot write {target}: {exc.strerror}", field="--root" if self.root else "user",
                                hint="choose a directory this user can write" if self.root
                                else "run it as root") from None

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
            raise CheckFailedError(f"`{shown}` failed (exit {done.returncode})" + (f": {last[-1]}" if last else ""),
                                   field="install", hint="see journalctl -u qwenops and systemctl status qwenops")


def install_systemd(profile_name: str | None, *, root: Path | None = None, dry_run: bool = False,
                    qwenops_bin: str | None = None, run: Runner = _run) -> InstallResult:
    """Install and start qwenops.service for PROFILE_NAME (see the module docstring)."""
    from qwenops.config.loader import load_profile
    from qwenops.render.deploy import ENV_FILE, QWENOPS_BIN
    from qwenops.render.systemd import UNIT_NAME, systemd_unit

    profile = load_profile(profile_name, env={})
    qwenops_bin = qwenops_bin or QWENOPS_BIN
    unit = systemd_unit(profile, qwenops_bin=qwenops_bin)  # a CPU profile is refused here
    _check_qwenops_bin(qwenops_bin, on_host=root is None)
    _preflight(root, dry_run, ("systemctl", "systemd-sysusers"))
    plan = _Plan(root, dry_run, run)
    plan.write(UNIT_PATH, unit, 0o644)
    if _under(root, ENV_FILE).exists():
        plan.keep_private(ENV_FILE)
    else:
        plan.write(ENV_FILE, _env_text(profile), 0o600, "mode 600, with a new random QWENOPS_API_KEY")
    plan.write(SYSUSERS_PATH, sysusers_conf(), 0o644)
    plan.write(MODULES_PATH, MODULES_CONF, 0o644)
    plan.command(["systemd-sysusers", SYSUSERS_PATH], why="create the qwenops user and groups")
    plan.command(["modprobe", "nvidia-uvm"], required=False, why="best effort: the driver may load it later")
    plan.command(["systemctl", "daemon-reload"])
    # --no-block: a GPU start takes minutes; journalctl -u qwenops -f shows it becoming ready.
    plan.command(["systemctl", "enable", "--now", "--no-block", UNIT_NAME])
    return InstallResult(command="install", profile=profile.name, root=str(root) if root else None, dry_run=dry_run,
                         unit=str(_under(root, UNIT_PATH)), env_file=str(_under(root, ENV_FILE)),
                         actions=tuple(plan.actions))


def uninstall_systemd(*, root: Path | None = None, dry_run: bool = False, purge: bool = False,
                      run: Runner = _run) -> InstallResult:
    """Stop, disable and remove qwenops.service; with PURGE also its key, data and user."""
    from qwenops.render.deploy import ENV_FILE, SERVICE_USER
    from qwenops.render.systemd import UNIT_NAME

    _preflight(root, dry_run, ("systemctl",))
    plan = _Plan(root, dry_run, run)
    if _under(root, UNIT_PATH).exists():
        plan.command(["systemctl", "disable", "--now", UNIT_NAME], why="stop it (drained) and disable it")
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
                         actions=tuple(plan.actions))
