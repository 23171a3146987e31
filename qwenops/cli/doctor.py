"""`qwenops doctor`: preflight this host (or a recorded probe) for a profile."""

from __future__ import annotations

from pathlib import Path

import click

from qwenops.cli._common import finish, json_option, profile_option


@click.command("doctor")
@profile_option
@click.option("--probe-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Run every check on recorded host facts instead of probing this host.")
@click.option("--save-probe", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the probed host facts to this file (replay it with --probe-file).")
@json_option
def doctor(profile: str | None, probe_file: Path | None, save_probe: Path | None, json_mode: bool) -> None:
    """Check GPU, driver, CUDA, RAM, disks, model, port and the memory plan; every finding with its fix."""
    from qwenops.cli.views.doctor import doctor_view
    from qwenops.doctor.run import run_doctor
    from qwenops.results import CommandResult

    report = run_doctor(profile, probe_file=probe_file, save_probe=save_probe)
    finish(CommandResult(command="doctor", data=report, ok=report.ok), json_mode=json_mode, view=doctor_view)
