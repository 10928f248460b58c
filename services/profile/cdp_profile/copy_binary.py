"""PostgreSQL's binary COPY format for rows of fixed-width columns, to and from numpy arrays.

A million rows of a recompute cross the wire in a fraction of a second this way: numpy reads
and writes the whole buffer at once, where asyncpg would build and encode a Python tuple per row.
Only columns whose binary form has a fixed width (uuid, int4, int8, float8) and no NULL qualify.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

# PostgreSQL type -> numpy type of its binary form (network byte order).
WIDTHS = {"uuid": "V16", "int4": ">i4", "int8": ">i8", "float8": ">f8"}
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = _SIGNATURE + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)


def row_type(columns: Sequence[tuple[str, str]]) -> np.dtype:
    """The numpy record of one row: a field count, then each column's length and value."""
    fields: list[tuple[str, str]] = [("_count", ">i2")]
    for name, kind in columns:
        fields += [(f"_{name}_length", ">i4"), (name, WIDTHS[kind])]
    return np.dtype(fields)


def decode(data: bytes | memoryview, columns: Sequence[tuple[str, str]]) -> np.ndarray:
    """The rows of a ``COPY ... TO STDOUT (FORMAT binary)`` output, as a structured array."""
    dtype = row_type(columns)
    view = memoryview(data)
    if bytes(view[: len(_SIGNATURE)]) != _SIGNATURE:
        raise ValueError("not a binary COPY stream")
    extension = struct.unpack(">i", view[15:19])[0]
    start = 19 + extension
    count = (len(view) - start - len(_TRAILER)) // dtype.itemsize
    rows = np.frombuffer(view, dtype=dtype, count=count, offset=start)
    for name, kind in columns:
        if count and (rows[f"_{name}_length"] != np.dtype(WIDTHS[kind]).itemsize).any():
            raise ValueError(f"column {name} holds NULL or is not {kind}")
    return rows


def encode(columns: Sequence[tuple[str, str]], values: dict[str, np.ndarray]) -> bytes:
    """A ``COPY ... FROM STDIN (FORMAT binary)`` stream of the given column arrays."""
    dtype = row_type(columns)
    count = len(next(iter(values.values()))) if values else 0
    rows = np.empty(count, dtype=dtype)
    rows["_count"] = len(columns)
    for name, kind in columns:
        rows[f"_{name}_length"] = np.dtype(WIDTHS[kind]).itemsize
        rows[name] = values[name]
    return _HEADER + rows.tobytes() + _TRAILER
