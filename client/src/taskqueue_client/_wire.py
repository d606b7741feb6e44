"""JSON to the generated dataclasses and back, by their type hints (stdlib only).

Decoding checks what the models promise (a required field is there, an int is an int, a status
is a known status) and keeps keys the models do not know in `extra`: an API that gained a field
still decodes, one that broke its contract raises `DecodeError` naming the place.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any, Literal, TypeVar, Union

from taskqueue_client.errors import DecodeError

T = TypeVar("T")
EXTRA = "extra"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(kind: type[T], value: Any) -> T:
    """`value` (parsed JSON) as an instance of the model `kind`."""
    decoded: T = _decode(kind, value, "$")
    return decoded


def _decode(kind: Any, value: Any, path: str) -> Any:
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return _decode_model(kind, value, path)
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        return _decode_union(typing.get_args(kind), value, path)
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise DecodeError(path, f"one of {typing.get_args(kind)}", value)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise DecodeError(path, "an array", value)
        (item,) = typing.get_args(kind)
        return [_decode(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise DecodeError(path, "an object", value)
        _, item = typing.get_args(kind)
        return {k: _decode(item, v, f"{path}.{k}") for k, v in value.items()}
    if kind is type(None):
        if value is not None:
            raise DecodeError(path, "null", value)
        return None
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            raise DecodeError(path, f"a {kind.__name__}", value) from None
    return _decode_scalar(kind, value, path)


def _decode_scalar(kind: Any, value: Any, path: str) -> Any:
    if kind is datetime:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                pass
        raise DecodeError(path, "an ISO 8601 date-time", value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise DecodeError(path, "a boolean", value)
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise DecodeError(path, "an integer", value)
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise DecodeError(path, "a number", value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise DecodeError(path, "a string", value)
    raise TypeError(f"no decoding for {kind!r} at {path}")


def _decode_union(options: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None and type(None) in options:
        return None
    candidates = [option for option in options if option is not type(None)]
    if len(candidates) == 1:  # X | None: X's own error says best where it broke
        return _decode(candidates[0], value, path)
    failures = []
    for option in candidates:
        try:
            return _decode(option, value, path)
        except DecodeError as error:
            failures.append(error.expected)
    raise DecodeError(path, " or ".join(failures), value)


def _decode_model(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise DecodeError(path, f"a {cls.__name__} object", value)
    hints = _hints(cls)
    known: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name == EXTRA:
            continue
        if field.name in value:
            known[field.name] = _decode(
                hints[field.name], value[field.name], f"{path}.{field.name}"
            )
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise DecodeError(f"{path}.{field.name}", "a required field", None)
    names = {field.name for field in dataclasses.fields(cls)}
    if EXTRA in names:
        known[EXTRA] = {k: v for k, v in value.items() if k not in names or k == EXTRA}
    return cls(**known)


def to_json(value: Any, *, drop_none: bool = False) -> Any:
    """A model (or a structure of them) as JSON-ready data, extras included: what the API sent.
    `drop_none` leaves out fields that are None (a request body: the API reads a missing
    optional field as None, and some refuse an explicit null)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if field.name == EXTRA:
                data.update(to_json(item))
            elif item is not None or not drop_none:
                data[field.name] = to_json(item, drop_none=drop_none)
        return data
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):  # the caller's data (params): kept as given, nulls too
        return {key: to_json(item) for key, item in value.items()}
    return value
