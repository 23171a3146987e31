"""`qwenops install systemd` / `qwenops uninstall systemd`: the rendered unit onto this host, or off it."""

from __future__ import annotations

import click

from qwenops.cli._common import finish, json_option, profile_option
from qwenops.results import CommandResult

# A string, checked by the core: Click's Path would turn '' into '.', the current directory.
_root_option = click.option(
    "--root", metavar="DIR",
    help="Write under DIR (an absolute path) instead of / and run nothing (image builds, tests).")
_dry_run_option = click.option("--dry-run", is_flag=True, help="Print every action; change nothing.")


@click.group()
def install() -> None:
    """Install a rendered deployment on this host."""


@click.group()
def uninstall() -> None:
    """Remove what `qwenops install` put on this host."""


@install.command("systemd")
@profile_option
@_dry_run_option
@_root_option
@click.option("--qwenops-bin", metavar="PATH",
              help="The qwenops the unit runs (default /opt/qwenops/bin/qwenops; not under /home or /root).")
@click.option("--gateway", is_flag=True,
              help="Also install qwenops-gateway.service (WebSockets on port 8090), its token in the env file.")
@json_option
def install_systemd_command(  # noqa: PLR0917 -- Click passes every option as a keyword
    profile: str | None, dry_run: bool, root: str | None, qwenops_bin: str | None, gateway: bool, json_mode: bool,
) -> None:
    """Write qwenops.service, its env file (0600, a new API key) and its user; enable and start it.

    With --gateway also qwenops-gateway.service and a QWENOPS_GATEWAY_TOKEN in the env file (never shown).
    """
    from qwenops.cli.views.install import install_view
    from qwenops.install.run import install_systemd

    data = install_systemd(profile, root=root, dry_run=dry_run, qwenops_bin=qwenops_bin, gateway=gateway)
    finish(CommandResult(command="install systemd", data=data), json_mode=json_mode, view=install_view)


@uninstall.command("systemd")
@_dry_run_option
@_root_option
@click.option("--purge", is_flag=True, help="Also remove the env file (the key), the caches (weights) and the user.")
@json_option
def uninstall_systemd_command(dry_run: bool, root: str | None, purge: bool, json_mode: bool) -> None:
    """Stop and disable qwenops.service (and qwenops-gateway.service) and remove their files."""
    from qwenops.cli.views.install import install_view
    from qwenops.install.run import uninstall_systemd

    data = uninstall_systemd(root=root, dry_run=dry_run, purge=purge)
    finish(CommandResult(command="uninstall systemd", data=data), json_mode=json_mode, view=install_view)
