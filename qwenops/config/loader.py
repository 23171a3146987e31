"""Loading profiles: find the file, follow `extends`, apply QWENOPS_<FIELD> and `--set` values, validate.

Precedence for every value is CLI > environment > env file > profile > vLLM's default (see
qwenops.config.settings for why), and each value keeps the name of where it came from, which
`profiles show --sources` prints.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from qwenops.config.paths import available_profiles
from qwenops.config.profile import OVERRIDABLE_FIELDS, Profile, check_name, validate_profile
from qwenops.config.settings import ENV_PREFIX, environment, load_settings
from qwenops.errors import ProfileInvalidError, ProfileNotFoundError


@dataclasses.dataclass(frozen=True)
class ResolvedProfile:
    """A validated profile and where each top-level value came from (a dataclass: Profile validated it)."""

    profile: Profile
    sources: dict[str, str]
    files: tuple[str, ...]


def _unique_key_loader() -> type:
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error, not "last wins", and
    an alias (`*name`) is an error: aliases let 1 MiB of profile stand for gigabytes of values (80,000 env
    entries of one 4,000-character value took `render kubernetes` 297 s and 2.3 GB, and wrote 321 MB)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.constructor.ConstructorError(
                    None, None, f"an alias (*{event.anchor}): a profile writes each value out, with no anchors "
                    "or aliases", event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, "a key is a list or a mapping, not a name", key_node.start_mark)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (a later one would silently win)",
                        key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


from qwenops.untrusted import MAX_EXTENDS_DEPTH, MAX_PROFILE_BYTES  # noqa: E402 -- re-exported: one home for the limits


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from qwenops.readfile import read_capped

    try:
        raw = read_capped(path, MAX_PROFILE_BYTES)  # a named pipe among the profiles must not hang the listing
    except OSError as exc:
        raise ProfileInvalidError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileInvalidError(f"{path} is larger than {MAX_PROFILE_BYTES // 1024} KiB; is it a profile?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileInvalidError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        kind = "error" if isinstance(exc, yaml.constructor.ConstructorError) else "syntax error"
        raise ProfileInvalidError(f"YAML {kind} at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ProfileInvalidError(f"YAML error in {path}: {exc}") from None
    except RecursionError:
        raise ProfileInvalidError(f"{path} nests too deeply to be a profile") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileInvalidError(f"{path} must hold a mapping of profile fields, not {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings (client, env, requirements, supervise); anything else is replaced."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _load_chain(
    name: str, available: Mapping[str, Path], chain: tuple[str, ...] = (),
    parsed: dict[Path, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, str], list[Path]]:
    field = "extends" if chain else "profile"
    try:
        check_name(name)
    except ValueError as exc:
        # Before any lookup: the name becomes a unit's argv word, a file name, a Kubernetes key.
        raise ProfileInvalidError(f"{printable_name(name)} is not a profile name: it {exc}", field=field) from None
    if name in chain:
        raise ProfileInvalidError(f"profile 'extends' loops: {' -> '.join((*chain, name))}", field="extends")
    if len(chain) >= MAX_EXTENDS_DEPTH:  # a chain of 1,000 was a RecursionError (exit 4: audit 7)
        raise ProfileInvalidError(f"profile {chain[0]!r} extends more than {MAX_EXTENDS_DEPTH} profiles "
                                  f"deep (through {chain[-1]!r})", field="extends")
    if name not in available:
        known = ", ".join(sorted(available)) or "none found"
        if chain:
            raise ProfileInvalidError(
                f"profile {chain[-1]!r} extends unknown profile {name!r} (available: {known})", field="extends"
            )
        raise ProfileNotFoundError(f"unknown profile {name!r}; available: {known}", field="profile")
    path = available[name]
    if parsed is None:
        raw = _read_yaml(path)
    else:  # one read and parse per file for a whole listing: a parent is shared by its children
        if path not in parsed:
            parsed[path] = _read_yaml(path)
        raw = dict(parsed[path])  # shallow: _merge copies every mapping it changes
    parent = raw.pop("extends", None)
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    files: list[Path] = []
    if parent is not None:
        if not isinstance(parent, str):
            raise ProfileInvalidError(f"{path}: 'extends' must be a profile name", field="extends")
        data, sources, files = _load_chain(parent, available, (*chain, name), parsed)
    data = _merge(data, raw)
    sources.update(dict.fromkeys(raw, f"profile {path.name}"))
    data["name"] = name
    sources["name"] = f"file name {path.name}"
    return data, sources, [*files, path]


def printable_name(name: object) -> str:
    """A rejected name for a one-line message: repr escapes control characters; a long one is cut."""
    text = repr(name)
    return text if len(text) <= 80 else text[:60] + "..."


def resolve_profile(
    name: str | None = None,
    *,
    cli_overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    profiles_dir: Path | None = None,
) -> ResolvedProfile:
    """Load NAME (following `extends`), apply QWENOPS_<FIELD> env values, then CLI values; validate.

    NAME None is the default profile: QWENOPS_PROFILE (environment or env file), else cpu-tiny.
    PROFILES_DIR None is QWENOPS_PROFILES_DIR, looked up before the shipped profiles.
    """
    if name is None:
        name = load_settings().profile
    return resolve_from(name, available_profiles(profiles_dir), cli_overrides=cli_overrides, env=env)


def resolve_from(
    name: str,
    available: Mapping[str, Path],
    *,
    cli_overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    parsed: dict[Path, dict[str, Any]] | None = None,
) -> ResolvedProfile:
    """resolve_profile with the profiles already found (AVAILABLE); PARSED, when given, keeps each file's
    YAML across calls, so that listing every profile reads each file once."""
    data, sources, files = _load_chain(name, available, parsed=parsed)
    # env=None: the real environment and env file; a mapping (tests, `profiles list`): only that.
    env_values = env_overrides(env)
    for key, (value, origin) in env_values.items():
        data[key] = value
        sources[key] = origin
    for key, value in (cli_overrides or {}).items():
        if value is not None:
            data[key] = value
            sources[key] = "command line"
    profile = validate_profile(data, origin=str(files[-1]), sources=sources)
    for key in Profile.model_fields:
        sources.setdefault(key, "default")
    return ResolvedProfile(profile=profile, sources=sources, files=tuple(str(f) for f in files))


def load_profile(name: str | None = None, **kwargs: Any) -> Profile:
    return resolve_profile(name, **kwargs).profile


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """QWENOPS_<FIELD> values for overridable profile fields, each with its source.

    ENVIRON None means the real environment plus the env file (qwenops.config.settings.environment);
    values stay strings and are validated with the profile.
    """
    found: dict[str, tuple[str, str]] = {}
    for name, found_value in environment(environ).items():
        field = name[len(ENV_PREFIX):].lower()
        if field in OVERRIDABLE_FIELDS:
            found[field] = (found_value.value, found_value.source)
    return found


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """`--set FIELD=VALUE` pairs -> {field: value}; only overridable profile fields are accepted."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ProfileInvalidError(f"expected FIELD=VALUE, got {pair!r}", field="--set")
        if key not in OVERRIDABLE_FIELDS:
            close = difflib.get_close_matches(key, OVERRIDABLE_FIELDS, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}?" if close else f"one of: {', '.join(OVERRIDABLE_FIELDS)}"
            raise ProfileInvalidError(f"{key!r} cannot be set from the command line", field="--set", hint=hint)
        overrides[key] = value
    return overrides
