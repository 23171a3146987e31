"""`model build-tiny`: where the model is, and its greedy answers to the known prompts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.tinymodel import TinyModelInfo


def build_tiny_view(info: TinyModelInfo) -> RenderableType:
    from qwenops.cli.views.tables import table

    verb = "built" if info.built else "cached"
    rows = [(prompt, answer) for prompt, answer in info.known_answers.items()]
    return table(
        ["prompt", "greedy answer"], rows,
        title=f"{verb}: {info.path} ({info.parameters:,} parameters, {info.seconds:.1f} s)",
    )
