"""`profiles list` and `profiles show`: what can be served, and where every value of a profile comes from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from qwenops.config.loader import ResolvedProfile, resolve_from
from qwenops.config.paths import profile_dirs, profiles_in
from qwenops.config.profile import Engine, Profile
from qwenops.errors import ProfileInvalidError


# Plain dataclasses, not pydantic models: they hold values the profile model has already validated, and
# each pydantic class costs start-up time to build (the envelope is the same: results.to_jsonable).
@dataclasses.dataclass(frozen=True)
class ProfileSummary:
    """One row of `profiles list`; a profile that does not load has `problem` and no engine/model."""

    name: str
    file: str
    engine: Engine | None = None
    model: str | None = None
    description: str = ""
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class ProfileList:
    profiles: tuple[ProfileSummary, ...]
    directories: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(p.problem is None for p in self.profiles)


def list_profiles(profiles_dir: Path | None = None) -> ProfileList:
    """Every profile with what it serves; one broken file is listed with its problem, not fatal to the rest."""
    dirs = profile_dirs(profiles_dir)
    found = profiles_in(dirs)
    parsed: dict[Path, dict[str, Any]] = {}
    summaries = []
    for name in sorted(found):
        try:
            profile = resolve_from(name, found, env={}, parsed=parsed).profile
        except ProfileInvalidError as exc:
            summaries.append(ProfileSummary(name=name, file=str(found[name]), problem=exc.one_line()))
            continue
        summaries.append(
            ProfileSummary(
                name=name, file=str(found[name]), engine=profile.engine, model=profile.model,
                description=profile.description,
            )
        )
    return ProfileList(profiles=tuple(summaries), directories=tuple(str(d) for d in dirs))


@dataclasses.dataclass(frozen=True)
class ProfileView:
    """A resolved profile as `profiles show` reports it; secrets appear only as '***' (the API key, and the env
    values whose names say they are secrets: `untrusted.masked_env`)."""

    name: str
    files: tuple[str, ...]
    values: dict[str, Any]
    sources: dict[str, str]
    api_key: str | None


def show_profile(resolved: ResolvedProfile, *, api_key_set: bool) -> ProfileView:
    from qwenops.untrusted import masked_env

    values = resolved.profile.model_dump(mode="json")
    values["env"] = masked_env(values.get("env") or {})
    return ProfileView(
        name=resolved.profile.name,
        files=resolved.files,
        values=values,
        sources=dict(sorted(resolved.sources.items(), key=lambda kv: list(Profile.model_fields).index(kv[0]))),
        api_key="***" if api_key_set else None,
    )
