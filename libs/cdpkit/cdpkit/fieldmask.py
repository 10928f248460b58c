"""AIP-134 update masks: which fields an Update call may change."""

from __future__ import annotations

from collections.abc import Iterable

from cdpkit.errors import InvalidArgument


def paths_to_update(paths: Iterable[str], updatable: frozenset[str]) -> frozenset[str]:
    """The validated mask; an empty mask (or ``*``) means every updatable field."""
    requested = frozenset(paths)
    if not requested or requested == {"*"}:
        return updatable
    unknown = sorted(requested - updatable)
    if unknown:
        raise InvalidArgument(
            "update_mask", f"cannot update {', '.join(unknown)}; updatable: {', '.join(sorted(updatable))}"
        )
    return requested
