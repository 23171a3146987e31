"""Frozen dataclasses that validate as pydantic models do, without importing pydantic for valid data.

Why not pydantic models: importing pydantic and building the first model costs about 0.1 s of CPU (its
plugin loader scans every installed package's entry points), most of a pure command's start-up
(`qwenops plan --probe-file`, issue #25). Why not another library: the error lines qwenops prints are
pydantic's, word for word (a probe file's, a config.json's, the planner's), and must stay so.

So a schema class is a frozen, keyword-only dataclass deriving from `Schema`; its fields' types, defaults
and `about(...)` metadata (bounds as pydantic's Field keywords, an alias, a description) are the schema,
and cross-field rules are plain functions (`__rules__`). Validation has two steps with one meaning, as
qwenops.config.profile's: `_fast` accepts data in which every value already has its field's exact type and
meets every bound and rule; anything else (a value pydantic would coerce, like 5 -> 5.0 for a float or
"5" for an int, or one it would refuse) goes to a pydantic model built from the same fields (`pydantic_model`),
which coerces it or raises its ValidationError, as before. Constructing a schema class validates like a
pydantic model's constructor; `model_copy` does not (as pydantic's). tests/unit/test_plainschema.py holds
the two steps equal on random hostile data.

Hand-written because no library does "pydantic's answer without pydantic"; the part written by hand is
only the fast accept, never an error message.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError
    from pydantic.fields import FieldInfo

S = TypeVar("S", bound="Schema")
_UnionType: Any = type(int | None)


class Undecided(Exception):
    """The data is not plainly valid: pydantic decides (it coerces a value, or raises the error)."""


class RuleError(ValueError):
    """A cross-field rule is broken: pydantic's custom error (its type, message template and context)."""

    def __init__(self, kind: str, template: str, ctx: dict[str, Any] | None = None) -> None:
        super().__init__(template)
        self.kind, self.template, self.ctx = kind, template, ctx


# A field rule: (the value, the fields validated before it) -> the value, or RuleError.
Rule = Callable[[Any, Mapping[str, Any]], Any]


def about(description: str | None = None, *, alias: str | None = None, **bounds: Any) -> dict[str, Any]:
    """A field's metadata: its description, its alias and its bounds (gt, ge, lt, le: pydantic's Field keywords)."""
    return {"description": description, "alias": alias, "bounds": bounds}


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    key: str  # the alias, else the name
    hint: Any
    bounds: Mapping[str, Any]
    description: str | None
    default: Any  # dataclasses.MISSING when required
    default_factory: Any


class _ModelFields:
    """`Cls.model_fields`: the pydantic model's FieldInfo by field name, as pydantic's class attribute (it
    builds the model, so it imports pydantic: for docs and tests, never on a pure command's path)."""

    def __get__(self, instance: object, owner: type[Schema]) -> dict[str, FieldInfo]:
        return pydantic_model(owner).model_fields


class Schema:
    """The base of a schema dataclass: validation on construction, and pydantic's model_validate,
    model_validate_json, model_dump, model_dump_json, model_copy and model_fields."""

    model_fields: ClassVar[_ModelFields] = _ModelFields()
    # pydantic ConfigDict keys beyond frozen=True: extra ("ignore" or "forbid"), allow_inf_nan, populate_by_name;
    # and strict_numbers (ours): every int and float field strict (pydantic's Field(strict=True)), for files that
    # only a program writes, in which a bool or a string where a number belongs is no number.
    __schema_config__: ClassVar[dict[str, Any]] = {}
    # field -> rule, run after the field's type and bounds (pydantic: an "after" field_validator).
    __rules__: ClassVar[dict[str, Rule]] = {}

    def __post_init__(self) -> None:
        cls = type(self)
        given = {f.key: getattr(self, f.name) for f in _fields(cls)}
        try:
            values = _fast(cls, given)
        except Undecided:
            values = _values(_from_model(cls, pydantic_model(cls).model_validate(_raw(given))))
        for name, value in values.items():
            if value is not getattr(self, name):
                object.__setattr__(self, name, value)

    @classmethod
    def model_validate(cls: type[S], data: Any) -> S:
        if isinstance(data, cls):
            return data
        if type(data) is dict:
            try:
                return _build(cls, _fast(cls, data))
            except Undecided:
                pass
        # Schema instances inside DATA are valid already; pydantic's model takes them as dicts of their keys.
        return _from_model(cls, pydantic_model(cls).model_validate(_raw(data)))

    @classmethod
    def model_validate_json(cls: type[S], text: str | bytes) -> S:
        return _from_model(cls, pydantic_model(cls).model_validate_json(text))

    def model_dump(self, *, mode: Literal["python", "json"] = "python", include: Iterable[str] | None = None,
                   exclude: Iterable[str] | None = None, by_alias: bool = False) -> dict[str, Any]:
        keep = None if include is None else set(include)
        drop = set(exclude or ())
        return {(f.key if by_alias else f.name): _dump(getattr(self, f.name), mode, by_alias)
                for f in _fields(type(self)) if (keep is None or f.name in keep) and f.name not in drop}

    def model_dump_json(self, *, by_alias: bool = False, indent: int | None = None,
                        exclude_none: bool = False) -> str:
        # pydantic writes the JSON, so saved files stay byte for byte what they were (float digits, escapes).
        model = pydantic_model(type(self)).model_validate(self.model_dump(by_alias=True))
        return model.model_dump_json(by_alias=by_alias, indent=indent, exclude_none=exclude_none)

    def model_copy(self: S, *, update: Mapping[str, Any] | None = None) -> S:
        """A copy with UPDATE's fields changed, not validated (as pydantic's model_copy)."""
        return _build(type(self), {**_values(self), **dict(update or {})})


def _values(instance: Schema) -> dict[str, Any]:
    return {f.name: getattr(instance, f.name) for f in _fields(type(instance))}


def _build(cls: type[S], values: Mapping[str, Any]) -> S:
    """An instance holding VALUES as they are: already validated (or a model_copy, which is not)."""
    instance = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(instance, name, value)
    return instance


def _dump(value: Any, mode: str, by_alias: bool) -> Any:
    if isinstance(value, Schema):
        return value.model_dump(mode=mode, by_alias=by_alias)  # type: ignore[arg-type]
    if isinstance(value, tuple):
        dumped = [_dump(item, mode, by_alias) for item in value]
        return dumped if mode == "json" else tuple(dumped)
    if isinstance(value, dict):
        return {key: _dump(item, mode, by_alias) for key, item in value.items()}
    return value


def _raw(value: Any) -> Any:
    """VALUE with every schema instance in it as a dict of its keys: what a pydantic model validates."""
    if isinstance(value, Schema):
        return {f.key: _raw(getattr(value, f.name)) for f in _fields(type(value))}
    if isinstance(value, Mapping):
        return {key: _raw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_raw(item) for item in value)
    return value


_FIELDS: dict[type, tuple[_Field, ...]] = {}


def _fields(cls: type[Schema]) -> tuple[_Field, ...]:
    known = _FIELDS.get(cls)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls)
    found = []
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        meta = spec.metadata
        found.append(_Field(spec.name, meta.get("alias") or spec.name, hints[spec.name], meta.get("bounds", {}),
                            meta.get("description"), spec.default, spec.default_factory))
    _FIELDS[cls] = tuple(found)
    return _FIELDS[cls]


# --- the check without pydantic: every value already exact, within its bounds and rules, or Undecided ---

def _fast(cls: type[Schema], data: Mapping[str, Any]) -> dict[str, Any]:
    """DATA's values (keyed by alias, or by name where the class populates by name) when plainly valid."""
    config = cls.__schema_config__
    fields = _fields(cls)
    by_name = config.get("populate_by_name", False)
    known = {f.key for f in fields} | ({f.name for f in fields} if by_name else set())
    if config.get("extra", "ignore") != "ignore" and not data.keys() <= known:
        raise Undecided
    values: dict[str, Any] = {}
    for f in fields:
        if f.key in data:
            if by_name and f.name != f.key and f.name in data:
                raise Undecided
            given = data[f.key]
        elif by_name and f.name in data:
            given = data[f.name]
        elif f.default is not dataclasses.MISSING:
            values[f.name] = f.default
            continue
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
            continue
        else:
            raise Undecided  # required
        value = _exact(f.hint, given, f.bounds, config)
        rule = cls.__rules__.get(f.name)
        if rule is not None:
            try:
                value = rule(value, values)
            except ValueError:
                raise Undecided from None
        values[f.name] = value
    return values


def _exact(hint: Any, value: Any, bounds: Mapping[str, Any], config: Mapping[str, Any]) -> Any:
    """VALUE as pydantic would hold it in a field of type HINT, when no coercion is involved; else Undecided."""
    if typing.get_origin(hint) in (typing.Union, _UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) != 1:
            raise Undecided
        hint = options[0]
    if isinstance(hint, type) and issubclass(hint, Schema):
        if isinstance(value, hint):  # a validated instance: pydantic takes a model instance as it is
            return value
        if type(value) is not dict:
            raise Undecided
        return _build(hint, _fast(hint, value))
    if hint is int or hint is float:
        return _exact_number(hint, value, bounds)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item, *rest = typing.get_args(hint)
        if rest != [Ellipsis] or type(value) not in (list, tuple):
            raise Undecided
        return tuple(_exact(item, entry, {}, config) for entry in value)
    exact = (hint in (bool, str) and type(value) is hint) or (
        origin is Literal and type(value) is str and value in typing.get_args(hint))
    if not exact:
        raise Undecided
    return value


def _exact_number(hint: type, value: Any, bounds: Mapping[str, Any]) -> int | float:
    # A bool is never a number here (pydantic reads True as 1); an int in a float field is that float, as
    # pydantic's lax mode makes it, where the float holds it exactly; inf and NaN are pydantic's to judge.
    if type(value) is int:
        if hint is float:
            if abs(value) > 2**53:
                raise Undecided
            value = float(value)
    elif not (hint is float and type(value) is float and math.isfinite(value)):
        raise Undecided
    gt, ge, lt, le = (bounds.get(key) for key in ("gt", "ge", "lt", "le"))
    if ((gt is not None and not value > gt) or (ge is not None and not value >= ge)
            or (lt is not None and not value < lt) or (le is not None and not value <= le)):
        raise Undecided
    return typing.cast(int | float, value)


# --- the pydantic models: the same fields, for coercion and for the error ---

_PLAIN: dict[type, type[Schema]] = {}
_MODELS: dict[type, type[BaseModel]] = {}


def pydantic_model(cls: type[Schema]) -> type[BaseModel]:
    """CLS as a pydantic model (its nested schema classes too), built once, on the first data that is not
    plainly valid."""
    known = _MODELS.get(cls)
    if known is not None:
        return known
    from pydantic import ConfigDict, Field, create_model, field_validator
    from pydantic_core import PydanticCustomError

    def rule_validator(rule: Rule) -> Any:
        def validate(cls: type, value: Any, info: Any) -> Any:
            try:
                return rule(value, info.data)
            except RuleError as exc:
                raise PydanticCustomError(exc.kind, exc.template, exc.ctx) from None
        return validate

    settings = dict(cls.__schema_config__)
    strict_numbers = settings.pop("strict_numbers", False)
    fields: dict[str, Any] = {}
    for f in _fields(cls):
        keywords: dict[str, Any] = {**f.bounds, "description": f.description}
        if strict_numbers and _number_hint(f.hint):
            keywords["strict"] = True  # no True for 1, no "12.4" for 12.4 (an int is still a float's)
        if f.key != f.name:
            keywords["alias"] = f.key
        if f.default is not dataclasses.MISSING:
            keywords["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            keywords["default_factory"] = f.default_factory
        fields[f.name] = (_pydantic_hint(f.hint), Field(**keywords))
    validators = {f"_{name}_rule": field_validator(name)(rule_validator(rule)) for name, rule in cls.__rules__.items()}
    config = ConfigDict(frozen=True, **settings)  # type: ignore[typeddict-item]
    # The class's docstring (its JSON schema's description), not the one the dataclass decorator writes without one.
    doc = cls.__doc__ if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}(") else None
    model: type[BaseModel] = create_model(cls.__name__, __config__=config, __doc__=doc, __validators__=validators,
                                          **fields)
    _PLAIN[model] = cls
    _MODELS[cls] = model
    return model


def _number_hint(hint: Any) -> bool:
    """HINT is int or float, or one of them or None."""
    if typing.get_origin(hint) in (typing.Union, _UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return len(options) == 1 and options[0] in (int, float)
    return hint in (int, float)


def _pydantic_hint(hint: Any) -> Any:
    if isinstance(hint, type) and issubclass(hint, Schema):
        return pydantic_model(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, _UnionType):
        return typing.Union[tuple(_pydantic_hint(arg) for arg in typing.get_args(hint))]  # noqa: UP007
    if origin is tuple:
        return tuple[tuple(_pydantic_hint(arg) if arg is not Ellipsis else arg  # type: ignore[misc]
                           for arg in typing.get_args(hint))]
    return hint


def _from_model(cls: type[S], model: BaseModel) -> S:
    return _build(cls, {f.name: _plain(getattr(model, f.name)) for f in _fields(cls)})


def _plain(value: Any) -> Any:
    plain = _PLAIN.get(type(value))
    if plain is not None:
        return _from_model(plain, value)
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    return value


def validation_error(exc: BaseException) -> ValidationError | None:
    """EXC when it is pydantic's ValidationError (pydantic is imported only when one was raised), else None."""
    import sys

    if "pydantic" not in sys.modules:
        return None
    from pydantic import ValidationError

    return exc if isinstance(exc, ValidationError) else None
