"""Profiles qwenops writes itself, beside the state (never in configs/): `NAME-fitted` (serve --auto-fit),
`NAME-tuned` (tune). Each extends the profile it was derived from and opens with a comment saying why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from qwenops.atomicfile import TargetRefused, write_atomic
from qwenops.errors import BadInputError


def derived_profile_text(*, extends: str, description: str, values: Mapping[str, object],
                         comment: Sequence[str]) -> str:
    """The YAML of a derived profile: the comment lines, then `extends`, `description` and VALUES in order.

    A comment line can quote outside text (a workload's path, a line of vLLM's log): every character YAML
    reads as a line break (\\n, \\r, U+0085, U+2028, U+2029) or that a terminal acts on is taken out, else
    it would end the comment and start keys of the profile serve runs; and the text must read back as DATA,
    or nothing is written (ValueError)."""
    import yaml

    data = {"extends": extends, "description": description, **values}
    lines = [f"# {_one_comment_line(line)}" if line else "#" for line in comment]
    text = "\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False)
    if yaml.safe_load(text) != data:
        raise ValueError("a derived profile's comment changed its data")  # a backstop: never reached
    return text


def _one_comment_line(line: str) -> str:
    from qwenops.untrusted import printable

    return printable(line, keep_newlines=False).translate({0x85: " ", 0x2028: " ", 0x2029: " "})


def save_derived_profile(state_dir: Path | str, name: str, *, extends: str, description: str,
                         values: Mapping[str, object], comment: Sequence[str]) -> Path:
    """Write `STATE_DIR/profiles/NAME.yaml` (replacing it) and return its path; `qwenops serve -p NAME` finds it."""
    directory = Path(state_dir) / "profiles"
    path = directory / f"{name}.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    text = derived_profile_text(extends=extends, description=description, values=values, comment=comment)
    try:
        write_atomic(path, text, mode=0o644, over_link=True)
    except TargetRefused as exc:  # a pipe or a device planted there: bad input, exit 2, never an internal error
        raise BadInputError(f"cannot save {path}: {exc.strerror}", field="state_dir", hint=exc.hint) from None
    return path


def own_values(path: Path) -> dict[str, object]:
    """The values a derived profile sets itself (not `extends`, not `description`); {} when unreadable."""
    import yaml

    from qwenops.readfile import read_capped
    from qwenops.untrusted import MAX_PROFILE_BYTES

    try:
        raw = read_capped(path, MAX_PROFILE_BYTES)
        if len(raw) > MAX_PROFILE_BYTES:
            return {}
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return {}
    return {k: v for k, v in data.items() if k not in ("extends", "description")} if isinstance(data, dict) else {}
