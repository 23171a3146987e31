"""`qwenops model build-tiny`: the tiny Qwen3-architecture model the CPU engine serves."""

from __future__ import annotations

from pathlib import Path

import click

from qwenops.cli._common import finish, json_option
from qwenops.results import CommandResult


@click.group()
def model() -> None:
    """Build and inspect local models."""


@model.command("build-tiny")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Training seed.")
@click.option("--force", is_flag=True, help="Rebuild even when a matching build is cached.")
@json_option
def build_tiny(directory: Path | None, seed: int, force: bool, json_mode: bool) -> None:
    """Build the tiny model into DIRECTORY (default: the state dir's models/qwen3-tiny, where cpu-tiny looks).

    No network: the tokenizer and weights are trained here in seconds; a cached build is reused.
    """
    from qwenops.cli.views.model import build_tiny_view
    from qwenops.config.settings import load_settings
    from qwenops.tinymodel import build_tiny_model

    target = directory or load_settings().state_dir / "models" / "qwen3-tiny"
    info = build_tiny_model(target, seed=seed, force=force)
    finish(CommandResult(command="model build-tiny", data=info), json_mode=json_mode, view=build_tiny_view)
