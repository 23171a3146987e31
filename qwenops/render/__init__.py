"""Renderers: a Profile becomes a vLLM argv or a start script (units and manifests come later).

The command cores here resolve the profile (CLI > environment > profile > default) and return
typed results; nothing prints.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from qwenops.config.loader import resolve_profile
from qwenops.config.settings import load_settings


class RenderedFlags(BaseModel):
    model_config = ConfigDict(frozen=True)

    profile: str
    argv: tuple[str, ...]
    command: str
    env: dict[str, str]


class RenderedScript(BaseModel):
    model_config = ConfigDict(frozen=True)

    profile: str
    script: str
    path: str | None


def render_flags(name: str | None, overrides: Mapping[str, str] | None = None) -> RenderedFlags:
    from qwenops.render.vllm import vllm_argv

    profile = resolve_profile(name, cli_overrides=overrides).profile
    argv = vllm_argv(profile, state_dir=load_settings().state_dir)
    return RenderedFlags(profile=profile.name, argv=tuple(argv), command=shlex.join(argv), env=dict(profile.env))


def render_script(
    name: str | None, overrides: Mapping[str, str] | None = None, output: Path | None = None
) -> RenderedScript:
    from qwenops.render.script import start_script

    profile = resolve_profile(name, cli_overrides=overrides).profile
    text = start_script(profile, state_dir=load_settings().state_dir)
    if output is not None:
        from qwenops.errors import BadInputError

        try:
            output.write_text(text, encoding="utf-8")
            output.chmod(0o755)
        except OSError as exc:
            hint = (f"create {output.parent} first, or choose another path" if not output.parent.is_dir()
                    else "choose a path this user can write")
            raise BadInputError(f"cannot write {output}: {exc.strerror}", field="--output", hint=hint) from None
    return RenderedScript(profile=profile.name, script=text, path=str(output) if output else None)
