"""The profile schema: named, versioned vLLM launch settings (configs/profiles/*.yaml).

Field names are vLLM's flag names with `_` for `-`, so rendering is mechanical (render/vllm.py) and
a reader of a profile can look every field up in `vllm serve --help`. `None` means "vLLM's default":
the flag is not rendered. Validation runs here, before anything is spawned, and a failure becomes one
line naming the field and what is allowed (`profile_error`). Loading files: qwenops.config.loader.

A profile is a frozen dataclass, and the fields below (their types, bounds and descriptions) are the
schema. Validation has two steps with one meaning: `_checked` accepts the data when every value already
has its field's exact type and satisfies every bound and rule; anything else (a value pydantic would
coerce, like "4096" from `--set` or QWENOPS_*, or a value it would reject) goes to the pydantic models
built from the same fields (`_models`), which coerce it or raise the error line. So a valid profile
file costs no pydantic at all (importing it and building the first model is about 0.1 s of CPU, most of
a pure command's start-up), and every error is pydantic's, word for word.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from qwenops.errors import ProfileInvalidError
from qwenops.units import MAX_GIB, MAX_TOKENS
from qwenops.untrusted import MAX_TEXT_FIELD_CHARS, NAME_PATTERN, NAME_RULE, control_character

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError
    from pydantic.fields import FieldInfo

    from qwenops.supervisor.options import SupervisorOptions

Engine = Literal["vllm", "vllm-cpu"]
Dtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]

# fullmatch, never match: `$` in Python also matches before a final newline.
_NAME = re.compile(NAME_PATTERN)
# POSIX's portable variable names, ASCII only (str.isalnum would take 'é' and '²').
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(r"(?=.{1,254}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?", re.ASCII)
_REASONING_PARSER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*", re.ASCII)


def one_line(value: str) -> str:
    """VALUE if it is one line of text within MAX_TEXT_FIELD_CHARS, else ValueError saying why.

    Every text value of a profile reaches some rendered file (a unit, a manifest, a script, argv); a
    line break or another control character there would start new structure, whatever the quoting."""
    found = control_character(value)
    if found is not None:
        raise ValueError(f"must be one line of text, without control characters; it has {found}")
    if len(value) > MAX_TEXT_FIELD_CHARS:
        raise ValueError(f"must be at most {MAX_TEXT_FIELD_CHARS} characters (it has {len(value)})")
    return value


def check_name(value: str) -> str:
    """VALUE if it is a profile name (NAME_PATTERN), else ValueError with the rule."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"must be {NAME_RULE}")
    return value


def _about(description: str | None = None, **bounds: Any) -> dict[str, Any]:
    """A schema field's metadata: its description and its bounds (gt, ge, le, min_length, pattern: the
    keywords of pydantic's Field)."""
    return {"description": description, "bounds": bounds}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What `Profile.model_fields[name]` tells: the field's description and default (pydantic's names)."""

    description: str | None
    default: Any


class _Schema:
    """The part of pydantic's model interface that qwenops uses on a profile: model_fields, model_dump,
    model_copy (which, as pydantic's, does not validate)."""

    model_fields: ClassVar[dict[str, FieldSpec]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.model_fields = {}  # filled once the dataclass decorator has made the fields: _finish_schema

    def model_dump(self, *, mode: str = "python", include: Iterable[str] | None = None,
                   exclude: Iterable[str] | None = None, exclude_defaults: bool = False) -> dict[str, Any]:
        keep = None if include is None else set(include)
        drop = set(exclude or ())
        dumped: dict[str, Any] = {}
        for name, spec in type(self).model_fields.items():
            if (keep is not None and name not in keep) or name in drop:
                continue
            value = self._value(name)
            if exclude_defaults and value == spec.default:
                continue
            dumped[name] = _dump(value, mode=mode, exclude_defaults=exclude_defaults)
        return dumped

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Any:
        return dataclasses.replace(self, **dict(update or {}))  # type: ignore[type-var]

    def _value(self, name: str) -> Any:
        return getattr(self, name)


def _dump(value: Any, *, mode: str, exclude_defaults: bool) -> Any:
    if isinstance(value, _Schema) or hasattr(value, "model_dump"):
        return value.model_dump(mode=mode, exclude_defaults=exclude_defaults)
    if isinstance(value, tuple) and mode == "json":
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _finish_schema(cls: type[_Schema]) -> None:
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        cls.model_fields[spec.name] = FieldSpec(spec.metadata.get("description"), default)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientDefaults(_Schema):
    """Sampling defaults for clients of this server (qwenops.stream, smoke-stream)."""

    temperature: float = field(default=0.8, metadata=_about("sampling temperature", ge=0.0, le=2.0))
    top_p: float = field(default=0.9, metadata=_about("nucleus sampling mass", gt=0.0, le=1.0))
    max_tokens: int = field(default=512, metadata=_about("most tokens generated per answer", ge=1, le=MAX_TOKENS))
    timeout_s: float = field(default=120.0, metadata=_about(
        "how long a client waits for one whole answer (troubleshoot --probe checks that a max_tokens answer fits "
        "in it)", gt=0, le=86400.0))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Requirements(_Schema):
    """What the host needs for this profile; `qwenops doctor` checks each one that is set."""

    gpu_name: str | None = field(default=None, metadata=_about("substring of the GPU name, e.g. 'RTX 4090D'"))
    min_gpu_memory_gib: float | None = field(default=None, metadata=_about(gt=0, le=MAX_GIB))
    cuda_version: str | None = field(default=None, metadata=_about("CUDA version the driver supports",
                                                                   pattern=r"^[0-9]{1,4}\.[0-9]{1,4}$"))
    min_ram_gib: float | None = field(default=None, metadata=_about(gt=0, le=MAX_GIB))
    min_system_disk_gib: float | None = field(default=None, metadata=_about(gt=0, le=MAX_GIB))
    min_data_disk_gib: float | None = field(default=None, metadata=_about(gt=0, le=MAX_GIB))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Supervise(_Schema):
    """The `supervise:` section as plain values, for the check without pydantic: the same fields, defaults and
    bounds as qwenops.supervisor.options.SupervisorOptions (tests/unit/test_profiles.py holds them equal),
    which `Profile.supervise` becomes when it is read."""

    startup_timeout_s: float = field(default=900.0, metadata=_about(gt=0))
    drain_timeout_s: float = field(default=30.0, metadata=_about(ge=0))
    health_interval_s: float = field(default=5.0, metadata=_about(gt=0))
    health_failures: int = field(default=3, metadata=_about(ge=1))
    backoff_initial_s: float = field(default=1.0, metadata=_about(ge=0))
    backoff_max_s: float = field(default=60.0, metadata=_about(ge=0))
    max_quick_failures: int = field(default=3, metadata=_about(ge=1))
    quick_failure_window_s: float = field(default=600.0, metadata=_about(gt=0))
    auto_fit: bool = False
    stall_timeout_s: float | None = field(default=120.0, metadata=_about(gt=0))
    stall_probe_timeout_s: float = field(default=30.0, metadata=_about(gt=0))
    # A listen address, normalised by SupervisorOptions' own rule (_SUPERVISE_RULES).
    metrics: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile(_Schema):
    """One way to launch vLLM's OpenAI-compatible server. See configs/profiles/ for examples."""

    name: str = field()
    description: str = ""
    engine: Engine = field(default="vllm", metadata=_about("'vllm' (GPU) or 'vllm-cpu' (the embedded CPU engine)"))

    # vLLM flags, named as vLLM names them.
    model: str = field(metadata=_about("Hugging Face repo id or local directory", min_length=1))
    served_model_name: str | None = field(default=None, metadata=_about("name clients send as `model`", min_length=1))
    host: str = field(default="127.0.0.1", metadata=_about("address the HTTP server binds"))
    port: int = field(default=8000, metadata=_about("TCP port of the HTTP server", ge=1, le=65535))
    tensor_parallel_size: int | None = field(default=None, metadata=_about(
        "GPUs the model is split across", ge=1, le=1024))
    gpu_memory_utilization: float | None = field(default=None, metadata=_about(
        "share of total GPU memory vLLM may use (weights + activations + KV)", gt=0.0, le=1.0))
    max_num_seqs: int | None = field(default=None, metadata=_about(
        "most sequences batched at once; lower it on OOM", ge=1, le=MAX_TOKENS))
    max_model_len: int | None = field(default=None, metadata=_about(
        "context window (prompt + answer) in tokens", ge=1, le=MAX_TOKENS))
    max_num_batched_tokens: int | None = field(default=None, metadata=_about(
        "tokens scheduled per engine step", ge=1, le=MAX_TOKENS))
    enforce_eager: bool = field(default=False, metadata=_about("skip CUDA graph capture: faster start, less memory"))
    disable_log_stats: bool = field(default=False, metadata=_about("no periodic throughput lines in the log"))
    dtype: Dtype | None = None
    quantization: str | None = field(default=None, metadata=_about("checkpoint quantization",
                                                                   pattern=r"^[a-z0-9_\-]+$"))
    kv_cache_dtype: KvCacheDtype | None = None
    cpu_offload_gb: float | None = field(default=None, metadata=_about(
        "GiB of weights kept in CPU RAM (slow)", ge=0, le=MAX_GIB))
    reasoning_parser: str | None = field(default=None, metadata=_about(
        "e.g. 'qwen3': splits <think> into reasoning_content"))
    extra_args: tuple[str, ...] = field(default=(), metadata=_about(
        "further vLLM flags, rendered verbatim after the others"))

    env: dict[str, str] = field(default_factory=dict, metadata=_about("environment variables for the server"))
    client: ClientDefaults = field(default_factory=ClientDefaults)
    requirements: Requirements = field(default_factory=Requirements)
    # `supervise` (a SupervisorOptions, below), kept as plain values until it is read.
    supervise_values: _Supervise = field(default_factory=_Supervise, repr=False)

    @functools.cached_property
    def supervise(self) -> SupervisorOptions:
        """How `qwenops serve` supervises this server (the profile's `supervise:` section)."""
        from qwenops.supervisor.options import SupervisorOptions

        # Valid already (and SupervisorOptions, a plainschema dataclass, takes it without pydantic).
        return SupervisorOptions.model_validate(dataclasses.asdict(self.supervise_values))

    @property
    def api_model_name(self) -> str:
        """The name clients must send: served_model_name, else the model path/id itself (vLLM's rule)."""
        return self.served_model_name or self.model

    def _value(self, name: str) -> Any:
        # model_fields names the section `supervise`; its values, without building SupervisorOptions, are these.
        return self.supervise_values if name == "supervise" else getattr(self, name)

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Profile:
        changes = dict(update or {})
        if "supervise" in changes:
            changes["supervise_values"] = _Supervise(**changes.pop("supervise").model_dump())
        return dataclasses.replace(self, **changes)


for _cls in (ClientDefaults, Requirements, _Supervise, Profile):
    _finish_schema(_cls)
Profile.model_fields["supervise"] = Profile.model_fields.pop("supervise_values")


# Profile fields that render as vLLM flags, in the order they are rendered.
VLLM_FLAG_FIELDS: tuple[str, ...] = (
    "served_model_name",
    "host",
    "port",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "max_num_seqs",
    "max_model_len",
    "max_num_batched_tokens",
    "enforce_eager",
    "disable_log_stats",
    "dtype",
    "quantization",
    "kv_cache_dtype",
    "cpu_offload_gb",
    "reasoning_parser",
)
# Text fields rendered as the value after a flag (or as vLLM's positional MODEL): never a flag themselves.
_FLAG_VALUES = frozenset({"model", "served_model_name", "host", "quantization", "reasoning_parser"})
# Scalar fields that QWENOPS_<FIELD> and CLI overrides may set.
OVERRIDABLE_FIELDS: tuple[str, ...] = ("engine", "model", *VLLM_FLAG_FIELDS)
# Number fields where YAML's true/false is refused by name (lax validation would read `port: true` as 1).
_NUMBER_FIELDS = ("port", "tensor_parallel_size", "gpu_memory_utilization", "max_num_seqs", "max_model_len",
                  "max_num_batched_tokens", "cpu_offload_gb")


# The rules beyond types and bounds, as plain functions: the pydantic models run them as validators, and the
# check without pydantic runs the same functions.

def _text_is_one_line(value: object, field_name: str | None) -> object:
    # Every string a profile holds, in any field, now or added later: one line of text. extra_args
    # and env are named by position or key, never by value (they can hold tokens).
    if isinstance(value, str):
        one_line(value)
        if field_name in _FLAG_VALUES and value.startswith("-"):
            raise ValueError("must not start with '-' (vLLM would read it as a flag)")
    elif isinstance(value, tuple):
        for position, word in enumerate(value, 1):
            if isinstance(word, str):
                _named(f"word {position}", word)
    elif isinstance(value, dict):
        for key, text in value.items():
            if isinstance(key, str):
                _named(f"the name {key[:40]!r}", key)
            if isinstance(text, str):
                _named(f"the value of {key[:40]!r}", text)
    return value


def _named(what: str, text: str) -> None:
    try:
        one_line(text)
    except ValueError as exc:
        raise ValueError(f"{what} {exc}") from None


# The long options an extra_args word must not reach, as vLLM spells them, each with the setting it stores (its
# argparse dest; tests/data/vllm_serve_flags.json records vLLM's own table, and a test holds this one to it): each
# structured field's flag, with `--no-X` for a boolean one and vLLM's alias of one; the model (the profile's own);
# a Unix socket that moves the listener off host:port; the secrets, which a process's arguments show to every user
# (`ps`); and a `--config` file (options qwenops never sees).
_PROTECTED_OPTIONS: dict[str, str] = {
    **{field.replace("_", "-"): field for field in VLLM_FLAG_FIELDS},
    "no-enforce-eager": "enforce_eager", "device-memory-utilization": "gpu_memory_utilization",
    "model": "model", "uds": "uds", "api-key": "api_key", "hf-token": "hf_token", "config": "config",
}
# vLLM's short forms of structured fields (`-tp 2`, `-q awq`); argparse also reads `-tp2`, `-qawq`, and a prefix of a
# short form (`-t 2`).
_PROTECTED_SHORT = {"-tp": "tensor_parallel_size", "-q": "quantization"}
_SECRET_OPTIONS = {"api_key": "QWENOPS_API_KEY", "hf_token": "HF_TOKEN"}


def vllm_option(word: str) -> str | None:
    """The protected option (a field name, "api_key" or "config") that vLLM's parser would read WORD as, or None.
    vLLM's FlexibleArgumentParser turns `_` into `-` in a long option's name (up to a `.` of a dotted one), and
    argparse takes any prefix of a long option (allow_abbrev: `--hos` is `--host`; an ambiguous prefix fails at
    start-up, so refusing it costs nothing): audit 8 moved a server to 0.0.0.0:9999 with `--hos`/`--por` while every
    view said 127.0.0.1:8000, and put the key in argv with `--api_key`."""
    if word.startswith("--"):
        name = word[2:].split("=", 1)[0].split(".", 1)[0].replace("_", "-")
        if not name:
            return None
        if name in _PROTECTED_OPTIONS:
            return _PROTECTED_OPTIONS[name]
        return next((field for option, field in _PROTECTED_OPTIONS.items() if option.startswith(name)), None)
    name = word.split("=", 1)[0]
    if len(name) < 2 or not name.startswith("-"):
        return None
    return next((field for short, field in _PROTECTED_SHORT.items()
                 if name.startswith(short) or short.startswith(name)), None)


def _extra_args_are_not_structured_flags(value: tuple[str, ...]) -> tuple[str, ...]:
    for arg in value:
        name = arg.split("=", 1)[0]
        field = vllm_option(arg)
        if field is None:
            continue
        option = f"--{field.replace('_', '-')}"
        what = option if name == option else f"{name[:40]} (vLLM reads it as {option})"
        if field in _SECRET_OPTIONS:
            raise ValueError(f"{what} must not be written in a profile (a process's arguments are public); set "
                             f"{_SECRET_OPTIONS[field]} in the env file or the service's environment instead")
        if field == "config":
            raise ValueError(f"{what} is a file of options that bypasses the profile's checks; write its options "
                             "in the profile instead")
        if field == "uds":
            raise ValueError(f"{what} moves vLLM's listener off the profile's host and port, where serve, status and "
                             "the gateway reach it")
        raise ValueError(f"{what} has its own profile field; set `{field}:` instead of extra_args")
    return value


# The key and the gateway's token have one route each (QWENOPS_API_KEY, QWENOPS_GATEWAY_TOKEN: the env file or the
# service's environment), never a profile, which is shown and rendered (audit 8: serve dropped a profile's
# VLLM_API_KEY while its dry run showed it and start_api.sh exported it).
_SECRET_ENV_NAMES = frozenset({"VLLM_API_KEY", "QWENOPS_API_KEY", "QWENOPS_GATEWAY_TOKEN"})


def _env_names(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not ENV_NAME.fullmatch(key):
            raise ValueError(f"{key[:40]!r} is not a valid environment variable name "
                             "(ASCII letters, digits and '_', not starting with a digit)")
        if key.upper() in _SECRET_ENV_NAMES:
            raise ValueError(f"{key} must not be written in a profile (profiles are shown and rendered); set "
                             f"{'QWENOPS_GATEWAY_TOKEN' if 'TOKEN' in key.upper() else 'QWENOPS_API_KEY'} in the env "
                             "file or the service's environment instead")
    return value


def _host_is_an_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if _HOST_NAME.fullmatch(value):
            return value
        raise ValueError("must be an IP address or a host name (letters, digits, '-' and '.')") from None
    if "%" in value:  # an IPv6 zone: free text that no deployment target can carry
        raise ValueError("must be an IP address without a %zone, or a host name")
    return value


def _reasoning_parser_is_a_name(value: str | None) -> str | None:
    if value is not None and not _REASONING_PARSER.fullmatch(value):
        raise ValueError("must be a parser name: letters, digits, '_', '.' and '-', e.g. 'qwen3'")
    return value


def _consistent(batched: int | None, seqs: int | None) -> None:
    # vLLM refuses to start when one step cannot schedule one token for every sequence.
    if batched is not None and seqs is not None and batched < seqs:
        raise ValueError(f"max_num_batched_tokens ({batched}) must be >= max_num_seqs ({seqs})")


# Profile's own field rules (after its type and bounds), by field.
_FIELD_RULES: dict[str, Callable[[Any], Any]] = {
    "extra_args": _extra_args_are_not_structured_flags,
    "env": _env_names,
    # The name becomes a file name, a unit's argv word, a Kubernetes key and label, an image tag.
    "name": check_name,
    "host": _host_is_an_address,
    "reasoning_parser": _reasoning_parser_is_a_name,
}


def _metrics_is_a_listen_address(value: str | None) -> str | None:
    from qwenops.supervisor.options import SupervisorOptions

    return typing.cast("str | None", SupervisorOptions.__rules__["metrics"](value, {}))


# The supervise: section's rules, SupervisorOptions' own (the pydantic Profile model runs them inside it).
_SUPERVISE_RULES: dict[str, Callable[[Any], Any]] = {"metrics": _metrics_is_a_listen_address}


# --- the check without pydantic: every value already exact and within bounds, or undecided ---

class _Undecided(Exception):
    """The data is not plainly valid: pydantic decides (it coerces the value, or names the error)."""


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_SECTIONS: dict[str, type[_Schema]] = {"client": ClientDefaults, "requirements": Requirements,
                                       "supervise": _Supervise}
_UnionType: Any = type(int | None)


def _exact(hint: Any, value: Any, bounds: Mapping[str, Any]) -> Any:
    """VALUE as pydantic would hold it in a field of type HINT, when no coercion is involved; else _Undecided."""
    if typing.get_origin(hint) in (typing.Union, _UnionType):
        if value is None:
            return None
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    origin = typing.get_origin(hint)
    if hint is str:
        return _exact_text(value, bounds)
    if hint is int or hint is float:
        return _exact_number(hint, value, bounds)
    if hint in _SECTIONS.values():
        return _checked(hint, value)
    return _exact_other(hint, origin, value)


def _exact_other(hint: Any, origin: Any, value: Any) -> Any:
    if hint is bool and type(value) is bool:
        return value
    if origin is Literal and type(value) is str and value in typing.get_args(hint):
        return value
    if origin is tuple and type(value) in (list, tuple) and all(type(word) is str for word in value):
        return tuple(value)
    if origin is dict and type(value) is dict and all(type(k) is str and type(v) is str for k, v in value.items()):
        return dict(value)
    raise _Undecided


def _exact_text(value: Any, bounds: Mapping[str, Any]) -> str:
    if type(value) is not str or len(value) < bounds.get("min_length", 0):
        raise _Undecided
    pattern = bounds.get("pattern")
    # ASCII: whatever this accepts, pydantic's Unicode-aware pattern accepts too.
    if pattern is not None and not re.fullmatch(pattern.strip("^$"), value, re.ASCII):
        raise _Undecided
    return value


def _exact_number(hint: type, value: Any, bounds: Mapping[str, Any]) -> int | float:
    # An int in a float field is that float (pydantic's lax mode does the same); a bool is never a number.
    if not (type(value) is int or (hint is float and type(value) is float and math.isfinite(value))):
        raise _Undecided
    number: int | float = float(value) if hint is float and abs(value) <= 2 ** 53 else value
    if hint is float and type(number) is int:
        raise _Undecided
    gt, ge, le = bounds.get("gt"), bounds.get("ge"), bounds.get("le")
    if (gt is not None and not number > gt) or (ge is not None and not number >= ge):
        raise _Undecided
    if le is not None and not number <= le:
        raise _Undecided
    return number


def _checked(cls: type[_Schema], data: Any) -> Any:
    """DATA as an instance of CLS when it is plainly valid; _Undecided otherwise."""
    if type(data) is not dict:
        raise _Undecided
    hints = _hints(cls)
    specs = {spec.name: spec for spec in dataclasses.fields(cls)}  # type: ignore[arg-type]
    names = {("supervise" if name == "supervise_values" else name): name for name in specs}
    if not data.keys() <= names.keys():
        raise _Undecided
    values: dict[str, Any] = {}
    for key, given in data.items():
        name = names[key]
        spec = specs[name]
        hint = _Supervise if name == "supervise_values" else hints[name]
        value = _exact(hint, given, spec.metadata.get("bounds", {}))
        if cls is not _Supervise:  # SupervisorOptions has no one-line rule
            _text_is_one_line(value, name)
        rule = _FIELD_RULES.get(name) if cls is Profile else _SUPERVISE_RULES.get(name) if cls is _Supervise else None
        values[name] = rule(value) if rule is not None else value
    for name, spec in specs.items():
        if name not in values and spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise _Undecided  # required
    checked = cls(**values)
    if isinstance(checked, Profile):
        _consistent(checked.max_num_batched_tokens, checked.max_num_seqs)
    return checked




def _plainly_valid(data: Mapping[str, Any]) -> Profile | None:
    try:
        profile = _checked(Profile, dict(data))
    except (_Undecided, ValueError):
        return None
    return profile if isinstance(profile, Profile) else None


# --- the pydantic models: the same fields, for coercion and for the error line ---

@functools.cache
def _models() -> type[BaseModel]:
    """The pydantic Profile model (with ClientDefaults, Requirements and SupervisorOptions inside), built from
    the dataclasses' fields and rules: built once, on the first profile that is not plainly valid."""
    from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_validator

    from qwenops.plainschema import pydantic_model
    from qwenops.supervisor.options import SupervisorOptions

    class _Strict(BaseModel):
        # inf and NaN pass a `gt=0` bound (or fail it with a confusing message); no profile number is either.
        model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)

        @field_validator("*")
        @classmethod
        def _text_is_one_line(cls, value: object, info: ValidationInfo) -> object:
            return _text_is_one_line(value, info.field_name)

    def build(cls: type[_Schema], types: Mapping[str, Any], validators: dict[str, Any]) -> type[BaseModel]:
        hints = _hints(cls)
        fields: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
            name = "supervise" if spec.name == "supervise_values" else spec.name
            hint = types.get(name, hints.get(spec.name))
            keywords = {**spec.metadata.get("bounds", {}), "description": spec.metadata.get("description")}
            if name in types:
                keywords["default_factory"] = types[name]
            elif spec.default_factory is not dataclasses.MISSING:
                keywords["default_factory"] = spec.default_factory
            elif spec.default is not dataclasses.MISSING:
                keywords["default"] = spec.default
            fields[name] = (hint, Field(**keywords))
        model: type[BaseModel] = create_model(cls.__name__, __base__=_Strict, __validators__=validators, **fields)
        return model

    def before_numbers(cls: type, value: object) -> object:
        # Lax mode would read `port: true` as 1; a YAML boolean in a number field is always a mistake.
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value

    def rule(function: Callable[[Any], Any]) -> Callable[[type, Any], Any]:
        def validate(cls: type, value: Any) -> Any:
            return function(value)
        return validate

    def consistent(self: Any) -> Any:
        _consistent(self.max_num_batched_tokens, self.max_num_seqs)
        return self

    validators: dict[str, Any] = {"_numbers_are_not_booleans": field_validator(*_NUMBER_FIELDS, mode="before")(
        before_numbers)}
    validators.update({f"_{name}_rule": field_validator(name)(rule(function))
                       for name, function in _FIELD_RULES.items()})
    validators["_consistent"] = model_validator(mode="after")(consistent)
    client = build(ClientDefaults, {}, {})
    requirements = build(Requirements, {}, {})
    return build(Profile, {"client": client, "requirements": requirements,
                           "supervise": pydantic_model(SupervisorOptions)}, validators)


def _from_model(model: BaseModel) -> Profile:
    values = {name: getattr(model, name) for name in Profile.model_fields}
    supervise = values.pop("supervise")
    return Profile(**{**values, "client": ClientDefaults(**values["client"].model_dump()),
                      "requirements": Requirements(**values["requirements"].model_dump())},
                   supervise_values=_Supervise(**supervise.model_dump()))


def validate_profile(data: Mapping[str, Any], *, origin: str, sources: Mapping[str, str] | None = None) -> Profile:
    """Validate merged profile data; the first problem becomes one line naming the field."""
    profile = _plainly_valid(data)
    if profile is not None:
        return profile
    from pydantic import ValidationError

    try:
        model = _models().model_validate(dict(data))
    except ValidationError as exc:
        raise profile_error(exc, origin=origin, sources=sources or {}) from None
    return _from_model(model)


def profile_error(exc: ValidationError, *, origin: str, sources: Mapping[str, str]) -> ProfileInvalidError:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    field = ".".join(loc) or "profile"
    where = sources.get(loc[0], f"profile {Path(origin).name}") if loc else origin
    model, info = _field_info(loc)
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], model.model_fields, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(model.model_fields)}"
        return ProfileInvalidError(f"unknown key in {where}", field=field, hint=hint)
    if error["type"] == "missing":
        return ProfileInvalidError(f"required, but not set in {where}", field=field)
    # Echo the rejected value only for a plain scalar field: env, extra_args and whole-profile errors
    # can carry tokens (HF_TOKEN, --api-key) that must never reach a terminal or a log.
    if not loc or loc[0] in _NEVER_ECHOED or isinstance(error.get("input"), (dict, list, tuple)):
        return ProfileInvalidError(f"{_allowed(error, info)} (in {where})", field=field)
    return ProfileInvalidError(f"{_allowed(error, info)} (got {_echo(error.get('input'))} from {where})", field=field)


def _echo(value: object) -> str:
    """The rejected value for an error line: repr escapes every control character; a long one is cut."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(str(value))} characters)"


_NEVER_ECHOED = ("env", "extra_args")


def _field_info(loc: list[str]) -> tuple[type[BaseModel], FieldInfo | None]:
    """The model that owns the last part of LOC, and that field's FieldInfo (None if unknown)."""
    from pydantic import BaseModel

    model: type[BaseModel] = _models()
    for part in loc[:-1]:
        info = model.model_fields.get(part)
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return model, None
        model = annotation
    return model, model.model_fields.get(loc[-1]) if loc else None


def _allowed(error: Mapping[str, Any], info: FieldInfo | None) -> str:
    """Phrase the violated constraint as the whole allowed range (all of the field's bounds)."""
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and info:
        bounds = [
            f"{symbols[name]} {getattr(meta, name)}"
            for meta in info.metadata
            for name in symbols
            if getattr(meta, name, None) is not None
        ]
        if bounds:
            return "must be " + " and ".join(bounds)
    ctx = error.get("ctx") or {}
    if error["type"] == "literal_error" and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    return str(error["msg"]).replace("Value error, ", "")


def describe_fields() -> Iterable[tuple[str, str]]:
    """(field, description) for every profile field, for docs and `profiles show`."""
    for name, info in Profile.model_fields.items():
        yield name, info.description or ""
