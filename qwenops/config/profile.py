"""The profile schema: named, versioned vLLM launch settings (configs/profiles/*.yaml).

Field names are vLLM's flag names with `_` for `-`, so rendering is mechanical (render/vllm.py) and
a reader of a profile can look every field up in `vllm serve --help`. `None` means "vLLM's default":
the flag is not rendered. Validation runs here, before anything is spawned, and a failure becomes one
line naming the field and what is allowed (`profile_error`). Loading files: qwenops.config.loader.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from qwenops.errors import ProfileInvalidError
from qwenops.supervisor.options import SupervisorOptions
from qwenops.units import MAX_GIB, MAX_TOKENS
from qwenops.untrusted import MAX_TEXT_FIELD_CHARS, NAME_PATTERN, NAME_RULE, control_character

Engine = Literal["vllm", "vllm-cpu"]

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


class _Strict(BaseModel):
    # inf and NaN pass a `gt=0` bound (or fail it with a confusing message); no profile number is either.
    # defer_build: each model's validator is built when first used, and then only as part of Profile's, not once
    # per class at import (the rules are the same; only when pydantic compiles them changes).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)

    @field_validator("*")
    @classmethod
    def _text_is_one_line(cls, value: object, info: ValidationInfo) -> object:
        # Every string a profile holds, in any field, now or added later: one line of text. extra_args
        # and env are named by position or key, never by value (they can hold tokens).
        if isinstance(value, str):
            one_line(value)
            if info.field_name in _FLAG_VALUES and value.startswith("-"):
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


class ClientDefaults(_Strict):
    """Sampling defaults for clients of this server (qwenops.stream, smoke-stream)."""

    temperature: float = Field(0.8, ge=0.0, le=2.0, description="sampling temperature")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_tokens: int = Field(512, ge=1, le=MAX_TOKENS, description="most tokens generated per answer")
    timeout_s: float = Field(120.0, gt=0, le=86400.0,
                             description="how long a client waits for one whole answer (troubleshoot --probe "
                                         "checks that a max_tokens answer fits in it)")


class Requirements(_Strict):
    """What the host needs for this profile; `qwenops doctor` checks each one that is set."""

    gpu_name: str | None = Field(None, description="substring of the GPU name, e.g. 'RTX 4090D'")
    min_gpu_memory_gib: float | None = Field(None, gt=0, le=MAX_GIB)
    cuda_version: str | None = Field(None, pattern=r"^\d+\.\d+$", description="CUDA version the driver supports")
    min_ram_gib: float | None = Field(None, gt=0, le=MAX_GIB)
    min_system_disk_gib: float | None = Field(None, gt=0, le=MAX_GIB)
    min_data_disk_gib: float | None = Field(None, gt=0, le=MAX_GIB)



class Profile(_Strict):
    """One way to launch vLLM's OpenAI-compatible server. See configs/profiles/ for examples."""

    name: str
    description: str = ""
    engine: Engine = Field("vllm", description="'vllm' (GPU) or 'vllm-cpu' (the embedded CPU engine)")

    # vLLM flags, named as vLLM names them.
    model: str = Field(min_length=1, description="Hugging Face repo id or local directory")
    served_model_name: str | None = Field(None, min_length=1, description="name clients send as `model`")
    host: str = Field("127.0.0.1", description="address the HTTP server binds")
    port: int = Field(8000, ge=1, le=65535, description="TCP port of the HTTP server")
    tensor_parallel_size: int | None = Field(None, ge=1, le=1024, description="GPUs the model is split across")
    gpu_memory_utilization: float | None = Field(
        None, gt=0.0, le=1.0, description="share of total GPU memory vLLM may use (weights + activations + KV)"
    )
    max_num_seqs: int | None = Field(None, ge=1, le=MAX_TOKENS,
                                     description="most sequences batched at once; lower it on OOM")
    max_model_len: int | None = Field(None, ge=1, le=MAX_TOKENS,
                                      description="context window (prompt + answer) in tokens")
    max_num_batched_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS,
                                               description="tokens scheduled per engine step")
    enforce_eager: bool = Field(False, description="skip CUDA graph capture: faster start, less memory")
    disable_log_stats: bool = Field(False, description="no periodic throughput lines in the log")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = None
    quantization: str | None = Field(None, pattern=r"^[a-z0-9_\-]+$", description="checkpoint quantization")
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] | None = None
    cpu_offload_gb: float | None = Field(None, ge=0, le=MAX_GIB, description="GiB of weights kept in CPU RAM (slow)")
    reasoning_parser: str | None = Field(None, description="e.g. 'qwen3': splits <think> into reasoning_content")
    extra_args: tuple[str, ...] = Field((), description="further vLLM flags, rendered verbatim after the others")

    env: dict[str, str] = Field(default_factory=dict, description="environment variables for the server")
    client: ClientDefaults = Field(default_factory=ClientDefaults)
    requirements: Requirements = Field(default_factory=Requirements)
    supervise: SupervisorOptions = Field(default_factory=SupervisorOptions)

    @field_validator(
        "port", "tensor_parallel_size", "gpu_memory_utilization", "max_num_seqs", "max_model_len",
        "max_num_batched_tokens", "cpu_offload_gb", mode="before",
    )
    @classmethod
    def _numbers_are_not_booleans(cls, value: object) -> object:
        # Lax mode would read `port: true` as 1; a YAML boolean in a number field is always a mistake.
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value

    @field_validator("extra_args")
    @classmethod
    def _extra_args_are_not_structured_flags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arg in value:
            name = arg.split("=", 1)[0]
            field = name.lstrip("-").replace("-", "_")
            if arg.startswith("--") and field in VLLM_FLAG_FIELDS:
                raise ValueError(f"{name} has its own profile field; set `{field}:` instead of extra_args")
            if name in ("--api-key",):
                raise ValueError("--api-key must not be written in a profile; set QWENOPS_API_KEY instead")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ENV_NAME.fullmatch(key):
                raise ValueError(f"{key[:40]!r} is not a valid environment variable name "
                                 "(ASCII letters, digits and '_', not starting with a digit)")
        return value

    @field_validator("name")
    @classmethod
    def _name_is_a_name(cls, value: str) -> str:
        # The name becomes a file name, a unit's argv word, a Kubernetes key and label, an image tag.
        return check_name(value)

    @field_validator("host")
    @classmethod
    def _host_is_an_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if _HOST_NAME.fullmatch(value):
                return value
            raise ValueError("must be an IP address or a host name (letters, digits, '-' and '.')") from None
        if "%" in value:  # an IPv6 zone: free text that no deployment target can carry
            raise ValueError("must be an IP address without a %zone, or a host name")
        return value

    @field_validator("reasoning_parser")
    @classmethod
    def _reasoning_parser_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and not _REASONING_PARSER.fullmatch(value):
            raise ValueError("must be a parser name: letters, digits, '_', '.' and '-', e.g. 'qwen3'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        # vLLM refuses to start when one step cannot schedule one token for every sequence.
        batched, seqs = self.max_num_batched_tokens, self.max_num_seqs
        if batched is not None and seqs is not None and batched < seqs:
            raise ValueError(f"max_num_batched_tokens ({batched}) must be >= max_num_seqs ({seqs})")
        return self

    @property
    def api_model_name(self) -> str:
        """The name clients must send: served_model_name, else the model path/id itself (vLLM's rule)."""
        return self.served_model_name or self.model


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


def validate_profile(data: Mapping[str, Any], *, origin: str, sources: Mapping[str, str] | None = None) -> Profile:
    """Validate merged profile data; the first problem becomes one line naming the field."""
    try:
        return Profile.model_validate(dict(data))
    except ValidationError as exc:
        raise profile_error(exc, origin=origin, sources=sources or {}) from None


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
    model: type[BaseModel] = Profile
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
