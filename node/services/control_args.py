"""A control command's arguments: the request's ``"args"`` object read into the command's own
frozen dataclass, field by field, by its type hints. Anything else is a RequestError
(``bad_request``) naming the argument, so a handler only ever sees typed values.

Field types understood: ``str``, ``int``, ``float`` (finite), ``bool``, an ``Enum`` (by value),
``tuple[str, ...]``, and any of these ``| None``. A field without a default is required. A
dataclass may check more in ``__post_init__`` and raise ``ArgumentError`` for one field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from node.services.control_errors import ErrorCode, RequestError

A = TypeVar("A")

# Within one request line (64 KiB) no argument list is longer; this bounds a tuple anyway.
MAX_LIST_ITEMS = 1024


class ArgumentError(RequestError):
    """One argument is wrong; ``name`` is the argument, ``detail`` says what is wrong with it."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        super().__init__(ErrorCode.BAD_REQUEST, f"argument {name!r} {detail}")


def check_schema(cls: type[Any]) -> None:
    """Raise AssertionError at registration if ``cls`` has a field this module cannot read."""
    assert dataclasses.is_dataclass(cls), f"{cls!r}: command arguments are a dataclass"
    for name, hint in typing.get_type_hints(cls).items():
        _reader(f"{cls.__name__}.{name}", hint)


def parse_args(cls: type[A], raw: object) -> A:
    """The request's ``args`` (absent: ``None``) as ``cls``. Raises RequestError(BAD_REQUEST)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, f"'args' must be a JSON object, got {_json_type(raw)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in raw:
        if name not in known:
            expected = ", ".join(known) or "none"
            raise ArgumentError(str(name)[:64], f"is not known (arguments: {expected})")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name in raw:
            values[name] = _reader(name, hints[name])(name, raw[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ArgumentError(name, "is required")
    return cls(**values)


def no_args(raw: object) -> None:
    """A command without arguments accepts none, or an empty ``args`` object."""
    if raw is None or raw == {}:
        return
    if isinstance(raw, dict):
        raise ArgumentError(str(next(iter(raw)))[:64], "is not known (the command takes no arguments)")
    raise RequestError(ErrorCode.BAD_REQUEST, f"'args' must be a JSON object, got {_json_type(raw)}")


Reader = typing.Callable[[str, object], Any]


def _reader(where: str, hint: Any) -> Reader:
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        read = _reader(where, inner)
        return lambda name, value: None if value is None else read(name, value)
    if hint is bool:
        return _read_bool
    if hint is int:
        return _read_int
    if hint is float:
        return _read_float
    if hint is str:
        return _read_str
    if isinstance(hint, type) and issubclass(hint, Enum):
        return lambda name, value: _read_enum(hint, name, value)
    if typing.get_origin(hint) is tuple and args == (str, Ellipsis):
        return _read_strings
    raise AssertionError(f"{where}: no reader for {hint!r}")


def _read_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(name, f"must be true or false, got {_json_type(value)}")
    return value


def _read_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(name, f"must be an integer, got {_json_type(value)}")
    return value


def _read_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError(name, f"must be a number, got {_json_type(value)}")
    if not math.isfinite(value):
        raise ArgumentError(name, "must be a finite number")
    return float(value)


def _read_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ArgumentError(name, f"must be a string, got {_json_type(value)}")
    return value


def _read_enum(cls: type[Enum], name: str, value: object) -> Enum:
    for member in cls:
        if member.value == value and type(member.value) is type(value):
            return member
    choices = ", ".join(repr(m.value) for m in cls)
    raise ArgumentError(name, f"must be one of {choices}")


def _read_strings(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ArgumentError(name, f"must be a list of strings, got {_json_type(value)}")
    if len(value) > MAX_LIST_ITEMS:
        raise ArgumentError(name, f"has {len(value)} items, at most {MAX_LIST_ITEMS}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ArgumentError(f"{name}[{i}]", f"must be a string, got {_json_type(item)}")
    return tuple(value)


def _json_type(value: object) -> str:
    """The JSON name of a value's type (what the client sent), never the value itself."""
    names: Mapping[type, str] = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
