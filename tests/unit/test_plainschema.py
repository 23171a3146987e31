"""The schema dataclasses (qwenops.plainschema: HostFacts, ModelInfo, PlanInput, Plan) validate as the pydantic
models they replaced (tests/unit/pydantic_reference.py): the same values, or the same errors; plainly valid data
needs no pydantic; what they write is byte for byte what pydantic wrote."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from qwenops import plainschema
from qwenops.hardware.facts import GpuDevice, HostFacts
from qwenops.modelinfo import ModelConfig
from qwenops.planner.memory import PlanInput
from tests.conftest import REPO
from tests.unit import pydantic_reference as reference

PROBES = sorted((REPO / "tests" / "data" / "probes").glob("*.json"))
CONFIG = json.loads((REPO / "configs" / "models" / "qwen3-14b.json").read_text())
CONFIG_VALUES = {"architecture": "Qwen3ForCausalLM", "num_hidden_layers": 40, "num_attention_heads": 40,
                 "num_key_value_heads": 8, "hidden_size": 5120, "intermediate_size": 17408, "vocab_size": 151936,
                 "head_dim": 128, "max_position_embeddings": 40960, "torch_dtype": "bfloat16",
                 "quantization": {"method": "awq", "bits": 4}, "rope_max_model_len": None}
PLAN_VALUES: dict[str, Any] = {"config": CONFIG_VALUES, "weights_gib": 9.4, "gpu_total_gib": 23.99,
                               "gpu_free_gib": 20.5, "gpu_name": "RTX", "gpu_memory_utilization": 0.9,
                               "max_model_len": 4096, "cpu_offload_gb": 2, "vllm_version": "0.11.0",
                               "gpu_processes": [{"pid": 1, "name": "p", "used_gib": 1.5}]}


def _outcome(model: Any, data: Any) -> tuple[object, ...]:
    """What validating DATA gives: its values (repr: NaN equals itself there), or its errors."""
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        return ("invalid", [(e["loc"], e["type"], e["msg"], repr(e.get("ctx"))) for e in exc.errors()])
    return ("valid", repr(validated.model_dump(by_alias=True)))


def _same(new: type[plainschema.Schema], old: type[BaseModel], data: Any) -> None:
    assert _outcome(new, data) == _outcome(old, data), data


@pytest.mark.parametrize("probe", PROBES, ids=[p.stem for p in PROBES])
def test_recorded_probes_need_no_pydantic_and_validate_and_save_as_before(probe: Path) -> None:
    raw = json.loads(probe.read_text())
    plainschema._fast(HostFacts, raw)  # plainly valid: no Undecided
    _same(HostFacts, reference.HostFacts, raw)
    assert HostFacts.model_validate(raw).to_json() == reference.HostFacts.model_validate(raw).to_json()


_ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**60, max_value=2**60)
    | st.sampled_from([0, 1, -1, 65535, 65536, 2**53 + 1, 10**9, 10**9 + 1, 0.0, -0.0, 1e-9, 5.5, 24564.0,
                       1024.0**2, 1024.0**2 + 1])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
    | st.sampled_from(["", "5", "5.0", "1e3", "true", "qwenops.hostfacts/1", "fp8", "0.7.3"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5)


_NUMBER = st.integers(-3, 3) | st.sampled_from([-1.5, -1e-9, 0.5, 1.01, 2**53, 10**9 + 1, 1024.0**2 + 0.5, 65536])


def _mutate(data: Any, draw: Any) -> Any:
    """DATA with one value somewhere in it replaced, removed, or a key added."""
    data = copy.deepcopy(data)
    node = data
    while True:
        keys: list[Any] = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return data
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.integers(0, 3)):
            node = child
            continue
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if action == "replace":
            node[key] = draw(_NUMBER | _ANY_VALUE)
        elif action == "remove" and isinstance(node, dict):
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.sampled_from(["bogus", "schema", "_source", "schema_", "source_note", "memory_used_mib"]))] = (
                draw(_ANY_VALUE))
        return data


_HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_HYPOTHESIS
@given(data=st.data())
def test_hostile_probes_validate_as_the_pydantic_models_did(data: st.DataObject) -> None:
    raw = json.loads(data.draw(st.sampled_from(PROBES)).read_text())
    raw["model"] = {"requested": "m", "info": {"source": "s", "config": CONFIG_VALUES, "weights_gib": 9.4,
                                                "shards": {"files": 1, "missing": ["a"]}}}
    for _ in range(data.draw(st.integers(1, 3))):
        raw = _mutate(raw, data.draw)
    _same(HostFacts, reference.HostFacts, raw)


@_HYPOTHESIS
@given(data=st.data())
def test_hostile_planner_inputs_validate_as_the_pydantic_models_did(data: st.DataObject) -> None:
    values = PLAN_VALUES
    for _ in range(data.draw(st.integers(1, 3))):
        values = _mutate(values, data.draw)
    _same(PlanInput, reference.PlanInput, values)
    _same(ModelConfig, reference.ModelConfig, values.get("config"))


def test_rules_across_fields_give_pydantics_errors() -> None:
    for change in ({"memory_used_mib": 99999}, {"memory_free_mib": 99999},
                   {"memory_used_mib": 20000, "memory_free_mib": 20000}, {"memory_total_mib": None}):
        device = {"index": 0, "memory_total_mib": 24564, "memory_used_mib": 12, "memory_free_mib": 24100, **change}
        _same(GpuDevice, reference.GpuDevice, device)
    for offload in (9.4, 9.41, 100, None):
        _same(PlanInput, reference.PlanInput, {**PLAN_VALUES, "cpu_offload_gb": offload})


def test_constructing_one_validates_and_coerces_as_pydantics_constructor() -> None:
    device = GpuDevice(index=0, memory_total_mib=24564)  # an int, as pydantic took it
    assert device.memory_total_mib == 24564.0 and type(device.memory_total_mib) is float
    with pytest.raises(ValidationError):
        GpuDevice(index=-1)
    with pytest.raises(ValidationError):
        GpuDevice(index=0, memory_total_mib=24564, memory_used_mib=12000, memory_free_mib=24100)
    config = ModelConfig.model_validate(CONFIG_VALUES)
    with pytest.raises(ValidationError, match="offload"):
        PlanInput(config=config, weights_gib=9.4, gpu_total_gib=24, cpu_offload_gb=9.5)
    # model_copy does not validate, as pydantic's did not.
    assert GpuDevice(index=0).model_copy(update={"index": -1}).index == -1


def test_a_plan_input_holding_a_model_config_instance_validates_as_before() -> None:
    new = {**PLAN_VALUES, "config": ModelConfig.model_validate(CONFIG_VALUES)}
    old = {**PLAN_VALUES, "config": reference.ModelConfig.model_validate(CONFIG_VALUES)}
    assert _outcome(PlanInput, new) == _outcome(reference.PlanInput, old)
    assert _outcome(PlanInput, {**new, "weights_gib": -1}) == _outcome(reference.PlanInput, {**old, "weights_gib": -1})


# SupervisorOptions (a profile's supervise: section; render's deployment targets read it): the same fields, values
# and errors as the pydantic model it was, alone and inside a profile.

SUPERVISE_VALUES: dict[str, Any] = {"startup_timeout_s": 300.0, "drain_timeout_s": 10, "health_failures": 3,
                                    "backoff_max_s": 10.0, "auto_fit": True, "stall_timeout_s": None,
                                    "metrics": "9400"}
_LISTEN = st.sampled_from([
    "9400", ":9400", "0.0.0.0:9401", "[::1]:9402", "127.0.0.1:9400", "::1:9400", "[::ffff:1.2.3.4]:1", "[::1]",
    "1.2.3.4:09400", "1.2.3.4:65535", "1.2.3.4:65536", "127.0.0.1:0", "localhost:9400", "host:9400", "[fe80::1%eth0]:9",
    "fe80::1%eth0:9400", "", ":", " 9400", "9400 ", "127.0.0.1:9400\n", "\uff11\uff12\uff13", "\u0661\u0662:1",
    "[127.0.0.1]:80", "[]:80", "1.2.3:80", "01.2.3.4:80", "x" * 70, "-1"])
_SUPERVISE_KEYS = st.sampled_from([*SUPERVISE_VALUES, "health_interval_s", "backoff_initial_s", "max_quick_failures",
                                   "quick_failure_window_s", "stall_probe_timeout_s", "bogus", "supervise"])


def _hostile_supervise(draw: Any) -> Any:
    """A supervise: section with a few values replaced, removed or added (sometimes not a mapping at all)."""
    if not draw(st.integers(0, 30)):
        return draw(_ANY_VALUE)
    data = dict(SUPERVISE_VALUES)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(_SUPERVISE_KEYS)
        if draw(st.integers(0, 4)):
            data[key] = draw(_LISTEN | _NUMBER | _ANY_VALUE | st.sampled_from([float("nan"), float("inf"), 2**53 + 1]))
        else:
            data.pop(key, None)
    return data


def test_supervisor_options_fields_are_the_pydantic_models() -> None:
    from qwenops.supervisor.options import SupervisorOptions

    assert list(SupervisorOptions.model_fields) == list(reference.SupervisorOptions.model_fields)
    for name, info in reference.SupervisorOptions.model_fields.items():
        new = SupervisorOptions.model_fields[name]
        assert (new.annotation, new.default, new.description, new.metadata) == (
            info.annotation, info.default, info.description, info.metadata), name
    model = plainschema.pydantic_model(SupervisorOptions)
    assert model.model_json_schema() == reference.SupervisorOptions.model_json_schema()
    assert model.model_config == reference.SupervisorOptions.model_config
    assert SupervisorOptions().model_dump() == reference.SupervisorOptions().model_dump()
    assert SupervisorOptions().model_dump_json() == reference.SupervisorOptions().model_dump_json()
    assert repr(SupervisorOptions(metrics="9400")) == repr(reference.SupervisorOptions(metrics="9400"))


def test_plainly_valid_supervisor_options_need_no_pydantic() -> None:
    from qwenops.supervisor.options import SupervisorOptions

    assert plainschema._fast(SupervisorOptions, SUPERVISE_VALUES)["metrics"] == "127.0.0.1:9400"
    options = SupervisorOptions(drain_timeout_s=3, metrics="[::1]:9402")  # an int, as pydantic took it
    assert options.drain_timeout_s == 3.0 and type(options.drain_timeout_s) is float
    # model_copy does not validate, as pydantic's did not.
    assert options.model_copy(update={"health_failures": 0}).health_failures == 0
    with pytest.raises(ValidationError, match="must be an IP address"):
        SupervisorOptions(metrics="localhost:9400")


@_HYPOTHESIS
@given(data=st.data())
def test_hostile_supervisor_options_validate_as_the_pydantic_model_did(data: st.DataObject) -> None:
    from qwenops.supervisor.options import SupervisorOptions

    values = _hostile_supervise(data.draw)
    _same(SupervisorOptions, reference.SupervisorOptions, values)
    if isinstance(values, dict) and values.keys() <= reference.SupervisorOptions.model_fields.keys():
        # The constructor validates as pydantic's did (an unknown keyword is a TypeError, not data).
        assert _constructed(SupervisorOptions, values) == _constructed(reference.SupervisorOptions, values)


def _constructed(cls: Any, values: dict[str, Any]) -> tuple[object, ...]:
    try:
        made = cls(**values)
    except ValidationError as exc:
        return ("invalid", [(e["loc"], e["type"], e["msg"], repr(e.get("ctx"))) for e in exc.errors()])
    return ("valid", repr(made.model_dump()))


def _profile_outcome(validate: Any, data: dict[str, Any]) -> tuple[object, ...]:
    from qwenops.errors import ProfileInvalidError

    try:
        profile = validate(data)
    except ProfileInvalidError as exc:
        return ("invalid", exc.one_line())
    return ("valid", repr(profile.model_dump(mode="json")), repr(profile.supervise.model_dump()))


def _old_profile(data: dict[str, Any]) -> Any:
    """DATA validated as before: by the pydantic Profile model holding the pydantic SupervisorOptions."""
    from qwenops.config import profile as schema
    from qwenops.supervisor.options import SupervisorOptions

    built = plainschema.pydantic_model
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plainschema, "pydantic_model",
                      lambda cls: reference.SupervisorOptions if cls is SupervisorOptions else built(cls))
        schema._models.cache_clear()
        try:
            try:
                model = schema._models().model_validate(data)
            except ValidationError as exc:
                raise schema.profile_error(exc, origin="p.yaml", sources={}) from None
            profile = schema._from_model(model)
            old = getattr(model, "supervise")  # noqa: B009 (a field of a model built at run time)
            assert isinstance(old, reference.SupervisorOptions)
            assert profile.supervise.model_dump() == old.model_dump()
            return profile
        finally:
            schema._models.cache_clear()


@_HYPOTHESIS
@given(data=st.data())
def test_hostile_supervise_sections_of_a_profile_give_the_same_profile_or_error_line(data: st.DataObject) -> None:
    from qwenops.config.profile import validate_profile

    profile = {"name": "p", "model": "m", "supervise": _hostile_supervise(data.draw)}
    assert _profile_outcome(lambda d: validate_profile(d, origin="p.yaml"), profile) == _profile_outcome(
        _old_profile, profile), profile
