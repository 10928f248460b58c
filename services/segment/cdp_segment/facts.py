"""Which announcement of an order is the newest, across merges and splits: pure Python.

Profile versions count per person, so two persons' versions say nothing about each other. An
order therefore remembers whose sequence its version counts in (the *writer*). When a merge or
a split moves the order to another person, that person becomes the writer at the version of the
announcement that moved it, and the previous writer and its last version are kept as the
*prior* writer: announcements of the previous owner can still arrive late (another partition),
and they carry content newer than what was moved as long as the new owner has not written the
order since. Once the new owner writes it, only the new owner's newer versions count.

A split may also move an event or an order before this service has seen it (the original
person's announcement of it is still on its way): the move is kept as a *claim*, and when the
fact arrives it goes to the person the claim names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Lineage:
    owner: str
    writer: str
    version: int
    prior_writer: str | None = None
    prior_version: int = 0


@dataclass(frozen=True)
class Claim:
    """A split moved the fact to ``to_person`` (at its ``version``) before the fact arrived;
    ``owner``: to_person, or its survivor when it has been merged away since."""

    to_person: str
    owner: str
    version: int


def announced(
    stored: Lineage | None, announcer: str, version: int, owner: str, claim: Claim | None = None
) -> Lineage | None:
    """The order's lineage after ``announcer``'s announcement of it at ``version`` (``owner``: the
    announcer, or its survivor when it was merged away since), or None when the announcement is
    older than what is stored (its content must not be applied)."""
    if stored is None:
        if claim is not None and claim.to_person != announcer:
            # Announced before the split moved it: the split's person owns it; the announcer
            # may still send newer content until that person writes it.
            return Lineage(claim.owner, claim.to_person, claim.version, announcer, version)
        if owner != announcer:  # a merged-away person's late announcement: the survivor's now
            return Lineage(owner, owner, 0, announcer, version)
        return Lineage(owner, announcer, version)
    if stored.writer == announcer:
        return Lineage(owner, announcer, version) if version > stored.version else None
    if stored.prior_writer == announcer:
        return replace(stored, prior_version=version) if version > stored.prior_version else None
    return None
