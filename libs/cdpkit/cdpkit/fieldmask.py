"""AIP-134 update masks: which fields an Update call may change."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message

from cdpkit.errors import InvalidArgument


def populated_fields(message: Message) -> frozenset[str]:
    """The fields of ``message`` that are set (proto3 scalars: not their default; lists: not
    empty), the implied mask of an Update call without one (AIP-134)."""
    return frozenset(field.name for field, _ in message.ListFields())


def paths_to_update(
    paths: Iterable[str], updatable: frozenset[str], *, populated: Iterable[str] | None = None
) -> frozenset[str]:
    """The validated mask; ``*`` means every updatable field.

    An empty mask means the updatable fields among ``populated`` when the caller passes them
    (AIP-134; nothing among them is an error), else every updatable field.
    """
    requested = frozenset(paths)
    if requested == {"*"}:
        return updatable
    if not requested:
        if populated is None:
            return updatable
        implied = updatable & frozenset(populated)
        if not implied:
            raise InvalidArgument("update_mask", f"nothing to update; updatable: {', '.join(sorted(updatable))}")
        return implied
    unknown = sorted(requested - updatable)
    if unknown:
        raise InvalidArgument(
            "update_mask", f"cannot update {', '.join(unknown)}; updatable: {', '.join(sorted(updatable))}"
        )
    return requested
