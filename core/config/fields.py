"""What a declared setting means: how it is read, checked and written, all derived from its declaration.

A setting is a field of a section struct, declared once as
`name: Annotated[type, Meta(bounds..., description="...")] = default`. msgspec.inspect
gives its type, its constraints (ge, gt, le, lt; min_length, max_length, pattern), its
description and its Meta `extra`, which may hold:

    unit   "duration": float seconds, written "30s" (use the alias Duration), or
           "size": int bytes, written "10GB" (use the alias Size)
    must   the words after "must be" in the message for a value outside the constraints,
           where the derived words ("between 1 and 65535", "at least 1", "1, 3 or 5")
           would not say enough; required with a pattern or a length, which have none

The types understood are str, int, float, bool, a Literal of strings or of whole numbers,
and tuple[str, ...]. Any other type, an unknown constraint or a missing description fails
as soon as the section is first inspected, so no setting can go unchecked or unexplained.
"""

from __future__ import annotations

import functools
import json
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, inspect

from core.units import format_duration, format_size, parse_duration, parse_size

__all__ = ["Duration", "Problem", "Setting", "Size", "settings_of"]

# A problem found by a section's own check: (the keys it concerns, first the one it is
# reported under; the message that follows "<section>.<key> ").
Problem = tuple[tuple[str, ...], str]

Duration = Annotated[float, Meta(extra={"unit": "duration"})]
Size = Annotated[int, Meta(extra={"unit": "size"})]

_UNITS: Final = {"duration": inspect.FloatType, "size": inspect.IntType}
_SUPPORTED_EXTRA: Final = {"unit", "must"}
_BOOLEANS: Final = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
    "1": True,
    "0": False,
}
_TYPE_WORDS: Final = {
    inspect.StrType: "a string",
    inspect.IntType: "a whole number",
    inspect.FloatType: "a number",
    inspect.BoolType: "true or false",
    inspect.VarTupleType: "a list of strings (comma-separated in a variable)",
}
_UNIT_WORDS: Final = {
    "duration": 'a duration such as "500ms", "30s", "2m", "1h", "7d" or a number of seconds',
    "size": 'a size such as "512KB", "256MB", "10GB", "1.5GiB" or a number of bytes',
}


@dataclass(frozen=True)
class Setting:
    """One declared setting: its name, default and description, and how to read, check and write it.

    `expects` completes "must be ..." for a value of the wrong type ("a whole number");
    `rule` completes it for a value of the right type outside the constraints ("between 1
    and 65535"), or is None when any value of the type will do.
    """

    name: str
    default: Any
    description: str
    expects: str
    rule: str | None
    unit: str | None
    _type: inspect.Type

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The values a Literal setting allows, else None."""
        return self._type.values if isinstance(self._type, inspect.LiteralType) else None

    def read(self, value: Any, *, from_env: bool) -> Any:
        """Return `value` (a TOML value, or the text of an environment variable) as this setting's type.

        Raises ValueError (or KeyError) when it is not of that type; the constraints are
        checked by `problem`, once the value is typed.
        """
        if self.unit == "duration":
            return parse_duration(_require(from_env or _is_number(value) or isinstance(value, str), value))
        if self.unit == "size":
            return parse_size(_require(from_env or _is_whole(value) or isinstance(value, str), value))
        kind = self._type
        if not isinstance(kind, inspect.LiteralType):
            return (_ENV_READERS if from_env else _FILE_READERS)[type(kind)](value)
        if not isinstance(kind.values[0], str):  # whole numbers: one outside the Literal is a `problem`, like a bound
            return (_ENV_READERS if from_env else _FILE_READERS)[inspect.IntType](value)
        text = str(_require(isinstance(value, str), value)).strip().lower()
        return _require(text in kind.values, text)

    def problem(self, value: Any) -> str | None:
        """The message for a wrong `value` of this setting ("must be ..., got ..."), or None when it is right."""
        if not _fits(self._type, value):
            return f"must be {self.expects}, got {self.shown(value)}"
        if self.rule is not None and not _within(self._type, value):
            return f"must be {self.rule}, got {self.shown(value)}"
        return None

    def fits(self, value: Any) -> bool:
        """Whether `value` is of this setting's type (its constraints aside)."""
        return _fits(self._type, value)

    def shown(self, value: Any) -> str:
        """`value` as a message shows it: durations and sizes in their units, lists as lists."""
        if self.unit == "duration" and _is_number(value):
            return format_duration(value)
        if self.unit == "size" and _is_whole(value):
            return format_size(value)
        return repr(list(value) if isinstance(value, tuple) else value)

    def written(self, value: Any) -> str:
        """`value` as TOML, durations and sizes in their units ("30s", "10GB")."""
        if self.unit == "duration":
            return json.dumps(format_duration(value))
        if self.unit == "size":
            return json.dumps(format_size(value))
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return "[" + ", ".join(json.dumps(item, ensure_ascii=False) for item in value) + "]"
        if isinstance(value, float):
            return repr(value)
        return json.dumps(value, ensure_ascii=False)


@functools.cache
def settings_of(section: type[msgspec.Struct]) -> tuple[Setting, ...]:
    """The settings a section struct declares, in declaration order.

    Raises TypeError when a field's declaration cannot be read, checked or written: a
    type this module does not know, an unknown constraint or `extra` key, a pattern or
    length without `must` words, a missing description.
    """
    info = inspect.type_info(section)
    assert isinstance(info, inspect.StructType)
    hints = typing.get_type_hints(section, include_extras=True)
    return tuple(_setting(section, field, hints[field.name]) for field in info.fields)


def _setting(section: type[msgspec.Struct], field: inspect.Field, hint: Any) -> Setting:
    where = f"{section.__name__}.{field.name}"
    kind, description, extra = field.type, "", {}
    if isinstance(kind, inspect.Metadata):
        description = (kind.extra_json_schema or {}).get("description", "")
        extra = kind.extra or {}
        kind = kind.type
    if isinstance(kind, inspect.LiteralType):  # msgspec sorts the choices; keep them as declared ("debug, info, ...")
        kind = msgspec.structs.replace(kind, values=_literal_values(hint))
    if not description:
        raise TypeError(f"{where}: declare its description, Meta(description=...)")
    if set(extra) - _SUPPORTED_EXTRA:
        raise TypeError(f"{where}: unknown Meta extra {sorted(set(extra) - _SUPPORTED_EXTRA)}")
    unit = extra.get("unit")
    if unit is not None and not isinstance(kind, _UNITS.get(unit, ())):
        raise TypeError(f"{where}: unit {unit!r} does not fit {type(kind).__name__}")
    if field.required:
        raise TypeError(f"{where}: declare its default; every setting is optional")
    return Setting(
        name=field.name,
        default=field.default if field.default_factory is msgspec.NODEFAULT else field.default_factory(),
        description=description,
        expects=_UNIT_WORDS[unit] if unit else _expects(where, kind),
        rule=extra.get("must") or _derived_rule(where, kind, unit),
        unit=unit,
        _type=kind,
    )


def _literal_values(hint: Any) -> tuple[Any, ...]:
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    assert typing.get_origin(hint) is Literal, hint
    return typing.get_args(hint)


# -- Types: what a value must be, and reading it from a file or a variable -------------


def _expects(where: str, kind: inspect.Type) -> str:
    if isinstance(kind, inspect.LiteralType):
        if all(isinstance(v, str) for v in kind.values):
            return _choice_words(kind.values)
        if all(_is_whole(v) for v in kind.values):
            return _TYPE_WORDS[inspect.IntType]
    elif isinstance(kind, inspect.VarTupleType):
        if isinstance(kind.item_type, inspect.StrType):
            return _TYPE_WORDS[inspect.VarTupleType]
    elif type(kind) in _TYPE_WORDS:
        return _TYPE_WORDS[type(kind)]
    raise TypeError(f"{where}: a setting of type {kind} has no reader; add one in core/config/fields.py")


def _fits(kind: inspect.Type, value: Any) -> bool:
    if isinstance(kind, inspect.BoolType):
        return isinstance(value, bool)
    if isinstance(kind, inspect.IntType):
        return _is_whole(value)
    if isinstance(kind, inspect.FloatType):
        return _is_number(value)
    if isinstance(kind, inspect.StrType):
        return isinstance(value, str)
    if isinstance(kind, inspect.VarTupleType):
        return isinstance(value, tuple) and all(isinstance(item, str) for item in value)
    assert isinstance(kind, inspect.LiteralType)
    return any(type(value) is type(choice) for choice in kind.values)


def _require(ok: bool, value: Any) -> Any:
    if not ok:
        raise ValueError(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_FILE_READERS: Final[dict[type, Callable[[Any], Any]]] = {
    inspect.StrType: lambda v: _require(isinstance(v, str), v),
    inspect.IntType: lambda v: _require(_is_whole(v), v),
    inspect.FloatType: lambda v: float(_require(_is_number(v), v)),
    inspect.BoolType: lambda v: _require(isinstance(v, bool), v),
    inspect.VarTupleType: lambda v: tuple(_require(isinstance(v, list) and all(isinstance(i, str) for i in v), v)),
}
_ENV_READERS: Final[dict[type, Callable[[str], Any]]] = {
    inspect.StrType: str,
    inspect.IntType: lambda s: int(s, 10),
    inspect.FloatType: float,
    inspect.BoolType: lambda s: _BOOLEANS[s.strip().lower()],
    inspect.VarTupleType: lambda s: tuple(part.strip() for part in s.split(",") if part.strip()),
}


# -- Constraints: the words for them, and checking a typed value against them ----------


def _derived_rule(where: str, kind: inspect.Type, unit: str | None) -> str | None:
    if isinstance(kind, inspect.LiteralType):
        return _choice_words(kind.values)
    if isinstance(kind, inspect.IntType | inspect.FloatType):
        if kind.multiple_of is not None:
            raise TypeError(f"{where}: multiple_of is not supported; say it with a Literal")
        return _bound_words(kind, unit)
    if isinstance(kind, inspect.StrType | inspect.VarTupleType):
        items = kind.item_type if isinstance(kind, inspect.VarTupleType) else None
        constrained = [kind.min_length, kind.max_length, getattr(kind, "pattern", None)]
        if isinstance(items, inspect.StrType):
            constrained += [items.min_length, items.max_length, items.pattern]
        if any(c is not None for c in constrained):
            raise TypeError(f"{where}: a pattern or a length needs the words for it, Meta(extra={{'must': ...}})")
    return None


def _choice_words(values: tuple[Any, ...]) -> str:
    if all(isinstance(v, str) for v in values):
        return "one of " + ", ".join(values)
    *first, last = (str(v) for v in values)
    return f"{', '.join(first)} or {last}" if first else last


def _bound_words(kind: inspect.IntType | inspect.FloatType, unit: str | None) -> str | None:
    def show(bound: float) -> str:
        if unit == "duration":
            return format_duration(bound)
        if unit == "size":
            return format_size(int(bound)) if bound >= 1024 else f"{bound} byte{'' if bound == 1 else 's'}"
        return str(bound)

    if kind.ge is not None and kind.le is not None and kind.gt is None and kind.lt is None:
        return f"between {show(kind.ge)} and {show(kind.le)}"
    words = [
        f"{phrase} {show(bound)}"
        for phrase, bound in (
            ("more than", kind.gt),
            ("at least", kind.ge),
            ("less than", kind.lt),
            ("at most", kind.le),
        )
        if bound is not None
    ]
    return " and ".join(words) or None


def _within(kind: inspect.Type, value: Any) -> bool:
    if isinstance(kind, inspect.LiteralType):
        return value in kind.values
    if isinstance(kind, inspect.IntType | inspect.FloatType):
        if isinstance(value, float) and math.isnan(value):
            return False
        return (
            (kind.gt is None or value > kind.gt)
            and (kind.ge is None or value >= kind.ge)
            and (kind.lt is None or value < kind.lt)
            and (kind.le is None or value <= kind.le)
        )
    if isinstance(kind, inspect.StrType):
        return _text_within(kind, value)
    if isinstance(kind, inspect.VarTupleType):
        items = kind.item_type
        return _length_within(kind.min_length, kind.max_length, len(value)) and (
            not isinstance(items, inspect.StrType) or all(_text_within(items, item) for item in value)
        )
    return True


def _text_within(kind: inspect.StrType, text: str) -> bool:
    # msgspec matches a pattern with re.search; so do we (anchor it with \A and \Z to match all of it)
    return _length_within(kind.min_length, kind.max_length, len(text)) and (
        kind.pattern is None or _compiled(kind.pattern).search(text) is not None
    )


def _length_within(low: int | None, high: int | None, length: int) -> bool:
    return (low is None or length >= low) and (high is None or length <= high)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
