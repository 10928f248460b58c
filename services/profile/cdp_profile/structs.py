"""google.protobuf.Struct <-> Python, faster than json_format (the consumer converts a lot)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    return {key: value_of(value) for key, value in struct.fields.items()}


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
            fields[key].struct_value.CopyFrom(to_struct(value))
        else:
            fields[key].list_value.extend(value)
    return message


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
