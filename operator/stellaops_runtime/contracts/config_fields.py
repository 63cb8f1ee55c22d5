"""A small declarative layer for the agent's configuration: typed keys, bounds, one error per key path.

Why this exists: the agent's configuration used to be pydantic models, and
``import pydantic`` plus building their validators cost the agent about 8 MB
of its 45 MB budget (issue 13). The sections are frozen dataclasses with
slots; each field declares its YAML key (camelCase), its Python name, its
default, its kind and bounds with :func:`setting`, :func:`duration`,
:func:`choice`, :func:`strings` and :func:`section`, and :class:`Model`
validates a mapping against them. Validation collects every problem of a
document with its key path, so one run reports them all.

The values are converted as config_base.py says; every difference from the
pydantic models is marked in tests/fixtures/config_behaviour.json. An error
message lists at most ``MAX_PROBLEMS`` problems, each value in it redacted
and cut short.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

from stellaops_runtime.contracts.config_base import (
    CONVERT,
    ConfigError,
    KeyProblem,
    as_given,
    one_of,
    shown,
    to_seconds,
    to_str,
    to_whole_seconds,
)
from stellaops_runtime.contracts.redact import redact

log = logging.getLogger("stellaops_runtime.contracts.config")

_M = TypeVar("_M", bound="Model")


Problems = list[tuple[tuple[str, ...], str]]

MAX_PROBLEMS = 100  # an error message lists this many problems, then how many more there are


# -- field declarations --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """What one key takes: how it is converted, its bounds, and its own check."""

    convert: Callable[[Any], Any]
    key: str | None = None  # the YAML key when it differs from the Python name
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_length: int | None = None
    check: Callable[[Any], Any] | None = None  # raises ValueError
    model: type[Model] | None = None  # a nested section (or the items of a list of them)
    many: bool = False  # a list of converted items
    hidden: bool = False  # not a key of its own: set by the model's ``_before``, left out of dumps


def _field(default: Any, factory: Callable[[], Any] | None, spec: Spec) -> Any:
    meta = {"spec": spec}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def setting(
    default: str | bool | int | float,
    *,
    key: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    check: Callable[[Any], Any] | None = None,
) -> Any:
    """A scalar key; its kind (str, bool, int, float) is its default's."""
    spec = Spec(CONVERT[type(default)], key, ge, gt, le, min_length, check)
    return _field(default, None, spec)


def duration(
    default: float,
    *,
    key: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    whole: bool = False,
    check: Callable[[Any], Any] | None = None,
) -> Any:
    """Seconds, or a Go/Kubernetes duration string; ``whole``: an int of whole seconds."""
    spec = Spec(to_whole_seconds if whole else to_seconds, key, ge, gt, le, check=check)
    return _field(default, None, spec)


def choice(default: Any, choices: tuple[str, ...], *, key: str | None = None, or_bool: bool = False) -> Any:
    """One of ``choices`` (exactly as written); ``or_bool``: else a boolean."""
    return _field(default, None, Spec(one_of(choices, or_bool), key))


def strings(
    *,
    key: str | None = None,
    default: tuple[str, ...] = (),
    min_length: int | None = None,
    check: Callable[[Any], Any] | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A list of strings (of ``choices`` when given); ``check`` sees the whole list."""
    spec = Spec(one_of(choices) if choices else to_str, key, min_length=min_length, check=check, many=True)
    return _field(None, lambda: list(default), spec)


def section(model: type[Model], *, key: str | None = None, many: bool = False) -> Any:
    """A nested section (a mapping), or with ``many`` a list of them."""
    spec = Spec(as_given, key, model=model, many=many)
    return _field(None, list if many else model, spec)


def anything(default: Any = None) -> Any:
    """A value a model's ``_before`` hook supplies as it is (never a YAML key of its own)."""
    return _field(default, None, Spec(as_given, hidden=True))


# -- models --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Bound:
    name: str
    key: str
    spec: Spec
    default: Any
    factory: Callable[[], Any] | None


def model(cls: type[_M]) -> type[_M]:
    """Makes a :class:`Model` subclass a frozen, slotted dataclass and reads its field declarations."""
    out = dataclasses.dataclass(frozen=True, slots=True, init=False)(cls)
    bound = []
    for f in dataclasses.fields(cast(Any, out)):
        spec = f.metadata["spec"]
        factory = None if f.default_factory is dataclasses.MISSING else f.default_factory
        bound.append(_Bound(f.name, spec.key or f.name, spec, f.default, factory))
    out._fields = tuple(bound)
    lookup: dict[str, _Bound] = {}
    for b in bound:
        lookup[b.key] = lookup[b.name] = b
    out._lookup = lookup
    return out


class Model:
    """A configuration section: built from a mapping of YAML keys (or Python names), validated, frozen."""

    __slots__ = ()

    # The section's key path, for messages, and its deprecated YAML names: old -> new.
    _section: ClassVar[str] = ""
    _deprecated: ClassVar[dict[str, str]] = {}
    _fields: ClassVar[tuple[_Bound, ...]] = ()
    _lookup: ClassVar[dict[str, _Bound]] = {}

    def __init__(self, **data: Any) -> None:
        problems: Problems = []
        values = type(self)._values(data, (), problems)
        if values is not None:
            for name, v in values.items():
                object.__setattr__(self, name, v)
            self._run_checks((), problems)
        if problems:
            raise ConfigError(format_problems(problems))

    @classmethod
    def model_validate(cls: type[_M], data: Any) -> _M:
        """The model from a mapping (YAML keys or Python names); ConfigError naming each bad key."""
        if isinstance(data, cls):
            return data
        problems: Problems = []
        out = cls._build(data, (), problems)
        if out is None:
            raise ConfigError(format_problems(problems))
        return out

    @classmethod
    def _build(cls: type[_M], data: Any, path: tuple[str, ...], problems: Problems) -> _M | None:
        """The model at ``path`` of a document, or None with its problems added."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            problems.append((path, f"expected a mapping, got {shown(data)}"))
            return None
        values = cls._values(data, path, problems)
        if values is None:
            return None
        obj = cls.__new__(cls)
        for name, v in values.items():
            object.__setattr__(obj, name, v)
        before = len(problems)
        obj._run_checks(path, problems)
        return obj if len(problems) == before else None

    def _run_checks(self, path: tuple[str, ...], problems: Problems) -> None:
        try:
            self._check()
        except KeyProblem as e:
            problems.append(((*path, e.key), str(e)))
        except ValueError as e:
            problems.append((path, str(e)))

    @classmethod
    def _values(
        cls, data: dict[Any, Any], path: tuple[str, ...], problems: Problems
    ) -> dict[str, Any] | None:
        """Every field's value from ``data``, or None when any key is wrong (each one is added)."""
        try:
            data = cls._before(data)
        except ValueError as e:
            problems.append((path, str(e)))
            return None
        before = len(problems)
        given: dict[str, tuple[Any, Any]] = {}  # field name -> (key as given, value)
        unknown = []
        for k, v in data.items():
            b = cls._lookup.get(k) if isinstance(k, str) else None
            if b is None:
                unknown.append(k)
            elif b.name in given:
                first = given[b.name][0]
                problems.append(((*path, str(k)), f"given twice, as {first} and as {k}: give only {b.key}"))
            else:
                given[b.name] = (k, v)
        values: dict[str, Any] = {}
        for b in cls._fields:
            if b.name not in given:
                values[b.name] = b.factory() if b.factory is not None else b.default
                continue
            k, v = given[b.name]
            values[b.name] = _value(b.spec, v, (*path, str(k)), problems)
        problems.extend(((*path, _key_text(k)), "unknown key") for k in unknown)
        return values if len(problems) == before else None

    @classmethod
    def _before(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        """Accept a deprecated name as its replacement: one warning per key, an error with both."""
        if not cls._deprecated:
            return data
        data = dict(data)
        for old, new in cls._deprecated.items():
            if old not in data:
                continue
            where = f"{cls._section}." if cls._section else ""
            if new in data:
                raise ValueError(
                    f"{where}{old} is the deprecated name of {where}{new}: give only {where}{new}"
                )
            log.warning("config key %s%s is deprecated, use %s%s", where, old, where, new)
            data[new] = data.pop(old)
        return data

    def _check(self) -> None:
        """The checks across keys; raises ValueError (or KeyProblem for one key)."""

    def _dump_extra(self, out: dict[str, Any]) -> None:
        """Adds what the dump holds beyond the fields (a model whose keys are not all fields)."""

    def model_dump(self, *, by_alias: bool = False, mode: str = "python") -> dict[str, Any]:
        """The model as a mapping parse_config reads back: YAML keys with ``by_alias``, else Python names.

        ``mode`` is accepted for pydantic's signature; every value is JSON-safe either way.
        """
        out: dict[str, Any] = {}
        for b in self._fields:
            if b.spec.hidden:
                continue
            out[b.key if by_alias else b.name] = _dump(getattr(self, b.name), by_alias, mode)
        self._dump_extra(out)
        return out


def _key_text(key: Any) -> str:
    """A key as a path names it: a short string as it is, anything else as :func:`shown` quotes it."""
    if isinstance(key, str) and len(key) <= 80:
        return key
    return shown(key)


def _dump(v: Any, by_alias: bool, mode: str) -> Any:
    if isinstance(v, Model):
        return v.model_dump(by_alias=by_alias, mode=mode)
    if isinstance(v, list):
        return [_dump(x, by_alias, mode) for x in v]
    return v


def _value(spec: Spec, v: Any, path: tuple[str, ...], problems: Problems) -> Any:
    """One field's value converted and checked; problems are added (the value is then meaningless)."""
    if spec.many:
        if not isinstance(v, list | tuple):
            problems.append((path, f"expected a list, got {shown(v)}"))
            return None
        before = len(problems)
        if spec.model is not None:
            items = [spec.model._build(x, (*path, str(i)), problems) for i, x in enumerate(v)]
        else:
            items = [_scalar(spec.convert, x, (*path, str(i)), problems) for i, x in enumerate(v)]
        if len(problems) != before:
            return None
        return _checked(spec, items, v, path, problems)
    if spec.model is not None:
        return spec.model._build(v, path, problems)
    before = len(problems)
    out = _scalar(spec.convert, v, path, problems)
    return out if len(problems) != before else _checked(spec, out, v, path, problems)


def _scalar(convert: Callable[[Any], Any], v: Any, path: tuple[str, ...], problems: Problems) -> Any:
    try:
        return convert(v)
    except ValueError as e:
        problems.append((path, str(e)))
        return None


def _checked(spec: Spec, out: Any, given: Any, path: tuple[str, ...], problems: Problems) -> Any:
    problem = _bound_problem(spec, out, given)
    if problem is not None:
        problems.append((path, problem))
        return None
    if spec.check is not None:
        try:
            return spec.check(out)
        except ValueError as e:
            problems.append((path, str(e)))
            return None
    return out


def _bound_problem(spec: Spec, out: Any, given: Any) -> str | None:
    if spec.min_length is not None and len(out) < spec.min_length:
        return "must not be empty" if spec.min_length == 1 else f"needs at least {spec.min_length} items"
    if spec.gt is not None and not out > spec.gt:  # NaN fails every bound
        return f"Input should be greater than {spec.gt}, got {shown(given)}"
    if spec.ge is not None and not out >= spec.ge:
        return f"Input should be greater than or equal to {spec.ge}, got {shown(given)}"
    if spec.le is not None and not out <= spec.le:
        return f"Input should be less than or equal to {spec.le}, got {shown(given)}"
    return None


def format_problems(problems: Problems) -> str:
    """Every problem on its own line under its key path (``a.b.0.c``), redacted (values may be URLs)."""
    lines = [f"  {'.'.join(path) or '(top level)'}: {message}" for path, message in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_PROBLEMS} more")
    return redact("invalid configuration:\n" + "\n".join(lines))
