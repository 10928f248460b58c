"""AIP-134 update masks: which fields an Update call may change."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from cdpkit.errors import InvalidArgument


def requested_paths(mask: FieldMask, resource: Message, updatable: Iterable[str]) -> list[str]:
    """The paths an Update asks for: its mask, or when the mask is omitted the fields of the
    resource that are populated (AIP-134), among ``updatable`` (a populated name or etag is an
    identifier, not a change)."""
    if mask.paths:
        return list(mask.paths)
    roots = {path.split(".", 1)[0] for path in updatable}
    return [field.name for field, _ in resource.ListFields() if field.name in roots]


def paths_to_update(paths: Iterable[str], updatable: frozenset[str]) -> frozenset[str]:
    """The validated paths: ``*`` means every updatable field, no path means none."""
    requested = frozenset(paths)
    if requested == {"*"}:
        return updatable
    unknown = sorted(requested - updatable)
    if unknown:
        raise InvalidArgument(
            "update_mask", f"cannot update {', '.join(unknown)}; updatable: {', '.join(sorted(updatable))}"
        )
    return requested
