"""`qwenops doctor`'s gathering: probe this host (or replay a probe file), load the profile and its model."""

from __future__ import annotations

from pathlib import Path

from qwenops.config.profile import Profile
from qwenops.doctor.checks import DoctorReport, diagnose
from qwenops.errors import BadInputError, QwenopsError
from qwenops.hardware.facts import ModelFacts
from qwenops.modelinfo import ModelInfo


def run_doctor(profile_name: str | None, *, probe_file: Path | None = None,
               save_probe: Path | None = None) -> DoctorReport:
    """Probe this host (or replay a probe file), load the profile and its model, and diagnose.

    A live probe records what it found of the profile's model in the facts, so `--save-probe` on a
    customer's box and `--probe-file` here judge that box's model, not the one on this machine.
    """
    from qwenops.config.loader import load_profile
    from qwenops.config.settings import load_settings
    from qwenops.hardware.facts import FileProbe, ModelFacts
    from qwenops.render.vllm import model_path

    profile = load_profile(profile_name)
    location = model_path(profile, load_settings().state_dir)
    if probe_file is not None:
        facts = FileProbe(probe_file).collect(data_dir=None, host=profile.host, port=profile.port)
        model, model_error, not_probed = _recorded_model(facts.model, profile)
        return diagnose(facts, profile, model, model_error=model_error, model_not_probed=not_probed,
                        facts_source=str(probe_file))

    from qwenops.hardware.host import LiveProbe

    model, model_error = _local_model(location)
    data_dir = Path(location) if Path(location).is_absolute() else _hf_cache()
    facts = LiveProbe().collect(data_dir=data_dir, host=profile.host, port=profile.port)
    facts = facts.model_copy(update={"model": ModelFacts(requested=profile.model, info=model, error=model_error)})
    if save_probe is not None:
        from qwenops.atomicfile import TargetRefused, write_atomic

        try:
            write_atomic(save_probe, facts.to_json(), mode=0o644)
        except TargetRefused as exc:
            raise BadInputError(f"cannot write {save_probe}: {exc.strerror}", field="save-probe",
                                hint=exc.hint) from None
        except OSError as exc:
            hint = (f"create {save_probe.parent} first, or choose another FILE" if not save_probe.parent.is_dir()
                    else "choose a FILE this user can write")
            raise BadInputError(f"cannot write {save_probe}: {exc.strerror}", field="save-probe", hint=hint) from None
    return diagnose(facts, profile, model, model_error=model_error, facts_source="live")


def _local_model(location: str) -> tuple[ModelInfo | None, str | None]:
    from qwenops.modelinfo import resolve_model

    try:
        return resolve_model(location), None
    except QwenopsError as exc:  # a missing/broken model is a finding of this report, not the end of it
        return None, exc.one_line()


def _recorded_model(recorded: ModelFacts | None, profile: Profile) -> tuple[ModelInfo | None, str | None, str | None]:
    """(model, model_error, model_not_probed) for a replay: the probe's own record of the model when
    it has one for this profile; else only the shipped catalog's numbers, which are the same on every
    host, so the memory plan still runs while the download checks skip."""
    from qwenops.modelinfo import from_catalog

    wanted = profile.model
    if recorded is not None and recorded.requested == wanted:
        return recorded.info, recorded.error, None
    why = (f"the probe recorded the model {recorded.requested!r}, not {wanted!r}" if recorded is not None
           else "the probe holds no model facts (recorded before qwenops kept them)")
    return from_catalog(wanted), None, (f"{why}, and this machine's copy says nothing about that host; "
                                        f"run `qwenops doctor -p {profile.name} --save-probe FILE` there")


def _hf_cache() -> Path:
    import os

    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home)
