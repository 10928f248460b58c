"""google.protobuf.Struct <-> Python, faster than json_format (the consumer converts a lot)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from cdp.events.v1 import events_pb2

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# EventType values and the names the profile stores ("track", "identify", ...), both ways.
EVENT_TYPE_NAMES = {value: name.removeprefix("EVENT_TYPE_").lower() for name, value in events_pb2.EventType.items()}
EVENT_TYPE_VALUES = {name: value for value, name in EVENT_TYPE_NAMES.items()}


def value_of(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        # Whole numbers become ints: ids, quantities, minor units.
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return to_dict(value.struct_value)
    if kind == "list_value":
        return [value_of(v) for v in value.list_value.values]
    return None


def to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    # Keys, then values by key: a map's items() is the generic Mapping mixin, in Python.
    fields = struct.fields
    return {key: value_of(fields[key]) for key in fields}


def text_of(struct: struct_pb2.Struct, *keys: str) -> str:
    """The first of ``keys`` that holds a string or a number, as text ("" when none does)."""
    fields = struct.fields
    for key in keys:
        if key in fields:
            value = value_of(fields[key])
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != "":
                return str(value)
    return ""


def to_struct(values: dict[str, Any]) -> struct_pb2.Struct:
    """Like ``Struct.update`` but 2x faster: exact type checks instead of abc isinstance."""
    message = struct_pb2.Struct()
    fill_struct(message, values)
    return message


def fill_struct(message: struct_pb2.Struct, values: dict[str, Any]) -> None:
    """:func:`to_struct` into an existing (empty) Struct, e.g. a field of a message being built."""
    fields = message.fields
    for key, value in values.items():
        kind = type(value)
        if kind is str:
            fields[key].string_value = value
        elif kind is bool:
            fields[key].bool_value = value
        elif kind is int or kind is float:
            fields[key].number_value = value
        elif value is None:
            fields[key].null_value = struct_pb2.NULL_VALUE
        elif kind is dict:
            inner = fields[key].struct_value
            inner.SetInParent()  # an empty object is still an object, not a null
            fill_struct(inner, value)
        else:
            fields[key].list_value.extend(value)  # nested dicts and lists: Struct's own conversion


def to_datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    """Timestamp -> aware UTC datetime (microseconds), several times faster than ToDatetime."""
    return EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def set_timestamp(stamp: timestamp_pb2.Timestamp, moment: datetime) -> None:
    """Like ``FromDatetime`` for aware datetimes, without the time-tuple round trip."""
    delta = moment - EPOCH
    stamp.seconds = delta.days * 86400 + delta.seconds
    stamp.nanos = delta.microseconds * 1000


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    set_timestamp(stamp, moment)
    return stamp


# Personal data inside properties -------------------------------------------------------------

Path = tuple  # keys (str) of objects and indexes (int) of lists, from the top


def find_keys(struct: struct_pb2.Struct, wanted: Callable[[str], bool], _path: Path = ()) -> list[tuple[Path, Any]]:
    """(path, value) of every key ``wanted`` says yes to, at any depth (not inside a found one)."""
    found = []
    fields = struct.fields
    for key in fields:
        value = fields[key]
        if wanted(key):
            found.append(((*_path, key), value_of(value)))
        elif value.WhichOneof("kind") in _CONTAINERS:
            found += _find_in_value(value, wanted, (*_path, key))
    return found


_CONTAINERS = frozenset({"struct_value", "list_value"})


def _find_in_value(value: struct_pb2.Value, wanted: Callable[[str], bool], path: Path) -> list[tuple[Path, Any]]:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return find_keys(value.struct_value, wanted, path)
    if kind == "list_value":
        found = []
        for index, item in enumerate(value.list_value.values):
            found += _find_in_value(item, wanted, (*path, index))
        return found
    return []


def _container(struct: struct_pb2.Struct, path: Path) -> struct_pb2.Struct:
    """The Struct holding the last key of ``path`` (created along the way when missing)."""
    current: Any = struct
    for step, following in itertools.pairwise(path):
        value = current.fields[step] if isinstance(current, struct_pb2.Struct) else current.values[step]
        if isinstance(following, int):
            current = value.list_value
            while len(current.values) <= following:
                current.values.add()
        else:
            current = value.struct_value
    return current


def without_keys(struct: struct_pb2.Struct, paths: list[Path]) -> struct_pb2.Struct:
    kept = struct_pb2.Struct()
    kept.CopyFrom(struct)
    for path in paths:
        del _container(kept, path).fields[path[-1]]
    return kept


def put_struct(struct: struct_pb2.Struct, path: Path, value: Any) -> None:
    """Set ``value`` at ``path`` (the inverse of :func:`without_keys`)."""
    _container(struct, path).fields[path[-1]].CopyFrom(to_struct({"v": value}).fields["v"])


def put_dict(values: dict, path: Path, value: Any) -> None:
    current: Any = values
    for step, following in itertools.pairwise(path):
        if isinstance(current, list):
            while len(current) <= step:
                current.append(None)
        default: Any = [] if isinstance(following, int) else {}
        if isinstance(current, dict):
            current = current.setdefault(step, default)
        else:
            if current[step] is None:
                current[step] = default
            current = current[step]
    current[path[-1]] = value
