"""Typed settings on plain dataclasses: coercion, bounds, and errors that name the offending key.

Why not pydantic: on the device it was the agent's heaviest import. Building its validators, plus
its plugin scan (which pulls in ``importlib.metadata``, ``email`` and ``zipfile``), kept about a
tenth of the agent's footprint on a 1080p camera resident in every ``facecast run``
(docs/performance.md).
The config and the model card need little: scalars, paths, literals, secrets, nested sections,
bounds, and an unknown key named instead of ignored. This module does that much and no more.

A section is a keyword-only dataclass. Constructing one, from keyword arguments or with
:meth:`Section.from_mapping`, coerces every field to its annotation. Environment variables are
strings, so ``"5"`` becomes ``5`` and ``"true"`` becomes ``True``. Every problem is collected
into one :class:`ValidationError`, whose entries carry the dotted location (``mqtt.port``).
"""

from __future__ import annotations

import dataclasses
import operator
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    from typing import Self, dataclass_transform
else:  # JetPack 6's Python 3.10 (pyproject installs typing_extensions there)
    from typing_extensions import Self, dataclass_transform

Location = tuple[str, ...]
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f"})
MASKED = "**********"


class ValidationError(ValueError):
    """All the problems found in one mapping, each as (location, message)."""

    def __init__(self, errors: list[tuple[Location, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(loc) or '(root)'}: {msg}" for loc, msg in errors))


class SettingError(ValueError):
    """Raised by a section's :meth:`Section.check`; ``field`` places the message on one key."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or a JSON dump (passwords)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASKED!r})"

    def __str__(self) -> str:
        return MASKED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def setting(
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A field with numeric bounds (``ge``: >=, ``gt``: >, ``le``: <=, ``lt``: <)."""
    bounds = {name: v for name, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"bounds": bounds})


@dataclass_transform(kw_only_default=True, field_specifiers=(setting, dataclasses.field))
class Section:
    """Base of every settings section. Subclasses become keyword-only dataclasses.

    ``class X(Section, frozen=True)`` makes it immutable (its subclasses too). ``extra_keys =
    "ignore"`` lets :meth:`from_mapping` skip keys it does not know instead of rejecting them.
    """

    extra_keys: ClassVar[Literal["forbid", "ignore"]] = "forbid"
    _hints: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, *, frozen: bool | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inherited = getattr(cls, "__dataclass_params__", None)
        freeze = frozen if frozen is not None else bool(inherited and inherited.frozen)
        dataclasses.dataclass(kw_only=True, frozen=freeze)(cls)
        cls._hints = get_type_hints(cls)

    def __post_init__(self) -> None:
        errors: list[tuple[Location, str]] = []
        for f in dataclasses.fields(typing.cast(Any, self)):
            try:
                value = _coerce(self._hints[f.name], self.before(f.name, getattr(self, f.name)))
                _check_bounds(value, f.metadata.get("bounds", {}))
            except ValidationError as exc:
                errors += [((f.name, *loc), msg) for loc, msg in exc.errors]
                continue
            except SettingError as exc:
                errors.append(((f.name,), str(exc)))
                continue
            object.__setattr__(self, f.name, value)
        if not errors:
            try:
                self.check()
            except SettingError as exc:
                errors.append(((exc.field,) if exc.field else (), str(exc)))
        if errors:
            raise ValidationError(errors)

    @classmethod
    def before(cls, name: str, value: Any) -> Any:
        """Rewrite a raw value before coercion (shorthands, case); the default keeps it."""
        return value

    def check(self) -> None:
        """Rules across fields, run after coercion; raise :class:`SettingError`. May normalise fields."""

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(typing.cast(Any, cls)))

    @classmethod
    def from_mapping(cls, data: Any) -> Self:
        """Validate ``data`` (a parsed YAML/TOML/JSON mapping) into this section."""
        if not isinstance(data, Mapping):
            raise ValidationError([((), f"must be a mapping of settings, got {_kind(data)}")])
        known = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls))}
        errors: list[tuple[Location, str]] = []
        if cls.extra_keys == "forbid":
            errors += [((str(key),), unknown_key(str(key), known)) for key in data if key not in known]
        missing = [
            name
            for name, f in known.items()
            if name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        errors += [((name,), "required") for name in missing]
        if missing:
            raise ValidationError(errors)
        try:
            section = cls(**{k: v for k, v in data.items() if k in known})
        except ValidationError as exc:
            raise ValidationError(errors + exc.errors) from None
        if errors:
            raise ValidationError(errors)
        return section

    def to_dict(self, *, json: bool = False) -> dict[str, Any]:
        """Plain data. With ``json``: paths as strings, tuples as lists, secrets masked."""
        return {
            f.name: _dump(getattr(self, f.name), json) for f in dataclasses.fields(typing.cast(Any, self))
        }


def unknown_key(key: str, known: Iterable[str]) -> str:
    """``unknown key``, with the closest known key when one is close enough to be the typo."""
    import difflib  # only when a key is wrong: nothing resident for a config that is right

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _dump(value: Any, json: bool) -> Any:
    if isinstance(value, Section):
        out: Any = value.to_dict(json=json)
    elif isinstance(value, dict):
        out = {k: _dump(v, json) for k, v in value.items()}
    elif json and isinstance(value, Path):
        out = str(value)
    elif json and isinstance(value, Secret):
        out = MASKED
    elif json and isinstance(value, tuple | list):
        out = [_dump(v, json) for v in value]
    else:
        out = value
    return out


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


_BOUNDS: Mapping[str, tuple[str, Callable[[Any, Any], bool]]] = types.MappingProxyType(
    {"ge": (">=", operator.ge), "gt": (">", operator.gt), "le": ("<=", operator.le), "lt": ("<", operator.lt)}
)


def _check_bounds(value: Any, bounds: Mapping[str, float]) -> None:
    if value is None:
        return
    for name, limit in bounds.items():
        symbol, holds = _BOUNDS[name]
        if not holds(value, limit):
            raise SettingError(f"must be {symbol} {limit:g}, got {value:g}")


def _coerce(tp: Any, value: Any) -> Any:  # noqa: PLR0911 - one branch per supported type
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is types.UnionType or origin is typing.Union:
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(get_args(tp)):
            return None
        if len(options) != 1:
            raise TypeError(f"unsupported setting type {tp!r}")
        return _coerce(options[0], value)
    if origin is Literal:
        for choice in get_args(tp):
            if value == choice and type(value) is type(choice):
                return choice
        choices = ", ".join(repr(c) for c in get_args(tp))
        raise SettingError(f"must be one of {choices}, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, Section):
        if isinstance(value, tp):
            return value
        return tp.from_mapping(value)
    if origin is tuple:
        return _coerce_tuple(get_args(tp), value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SettingError(f"must be a mapping, got {_kind(value)}")
        return dict(value)
    scalar = _SCALARS.get(tp)
    if scalar is None:
        raise TypeError(f"unsupported setting type {tp!r}")
    return scalar(value)


def _coerce_tuple(args: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise SettingError(f"must be a list, got {_kind(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(args[0], v) for v in value)
    if len(value) != len(args):
        raise SettingError(f"must be a list of {len(args)} values, got {len(value)}")
    return tuple(_coerce(a, v) for a, v in zip(args, value, strict=True))


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise SettingError(f"must be true or false, got {value!r}")


def _parsed(value: Any, parse: Callable[[str], Any], what: str) -> Any:
    """A number written as text (every environment variable is), or ``SettingError`` naming ``what``."""
    if isinstance(value, str):
        try:
            return parse(value.strip())
        except ValueError:
            pass
    raise SettingError(f"must be {what}, got {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(_parsed(value, int, "a whole number"))


def _to_float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float(_parsed(value, float, "a number"))


def _to_str(value: Any) -> str:
    # YAML reads `host: 10` or `password: 1234` as numbers; what the user meant is the text.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise SettingError(f"must be text, got {_kind(value)}")


def _to_path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value:
        return Path(value)
    raise SettingError(f"must be a file path, got {value!r}")


def _to_secret(value: Any) -> Secret:
    return value if isinstance(value, Secret) else Secret(_to_str(value))


_SCALARS: Mapping[Any, Callable[[Any], Any]] = types.MappingProxyType(
    {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str, Path: _to_path, Secret: _to_secret}
)
