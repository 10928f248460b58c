"""OneID rules, pure Python: which identifiers an event carries and which person they resolve to.

Foundation scope: exact matching on normalised values, a person created for a set nobody
holds, new identifiers attached to the person of the highest-priority matching identifier.
When a set matches several persons they are not merged yet (merging with guardrails, conflict
records and unmerge are issue 3); the event goes to the highest-priority match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Identifier:
    type: str
    value: str


class InvalidIdentifier(ValueError):
    def __init__(self, type_: str, reason: str) -> None:
        super().__init__(f"{type_}: {reason}")
        self.type = type_
        self.reason = reason


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BLANK_VALUES = frozenset({"", "null", "undefined", "none", "nil"})
MAX_VALUE_LENGTH = 256


def _plain(value: str) -> str:
    return value.strip()


def _email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError("not an e-mail address")
    return value


def _phone(value: str) -> str:
    digits = re.sub(r"[\s\-().]", "", value.strip())
    plus = digits.startswith("+")
    digits = digits.lstrip("+")
    if not digits.isdigit() or not 6 <= len(digits) <= 15:
        raise ValueError("not a phone number")
    return ("+" if plus else "") + digits


@dataclass(frozen=True)
class IdentifierType:
    name: str
    # Higher wins when the identifiers of one event point at different persons.
    priority: int
    normalise: Callable[[str], str] = field(default=_plain, compare=False)


BUILTIN_TYPES: dict[str, IdentifierType] = {
    t.name: t
    for t in (
        IdentifierType("user_id", 100),
        IdentifierType("email", 80, _email),
        IdentifierType("phone", 70, _phone),
        IdentifierType("anonymous_id", 10),
    )
}

# Trait keys (identify traits, context.traits) that carry identifiers.
TRAIT_IDENTIFIERS = {"email": "email", "phone": "phone"}


def normalise(type_: str, value: Any, types: Mapping[str, IdentifierType] = BUILTIN_TYPES) -> Identifier:
    """The canonical identifier, or :class:`InvalidIdentifier` with the reason."""
    kind = types.get(type_)
    if kind is None:
        raise InvalidIdentifier(type_, "unknown identifier type")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidIdentifier(type_, "value must be a string")
    text = str(value)
    if text.strip().lower() in _BLANK_VALUES:
        raise InvalidIdentifier(type_, "blank value")
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidIdentifier(type_, f"longer than {MAX_VALUE_LENGTH} characters")
    try:
        return Identifier(type_, kind.normalise(text))
    except ValueError as exc:
        raise InvalidIdentifier(type_, str(exc)) from None


@dataclass
class Collected:
    identifiers: list[Identifier]
    rejected: list[InvalidIdentifier]


def collect_identifiers(
    *,
    user_id: str = "",
    anonymous_id: str = "",
    previous_id: str = "",
    traits: Mapping[str, Any] | None = None,
    context_traits: Mapping[str, Any] | None = None,
) -> Collected:
    """The identifiers an event carries, de-duplicated, and the values rejected with reasons."""
    candidates: list[tuple[str, Any]] = []
    if user_id:
        candidates.append(("user_id", user_id))
    if anonymous_id:
        candidates.append(("anonymous_id", anonymous_id))
    if previous_id:
        # alias: the id being linked, in practice the anonymous id used before login.
        candidates.append(("anonymous_id", previous_id))
    for source in (traits or {}, context_traits or {}):
        for key, type_ in TRAIT_IDENTIFIERS.items():
            if source.get(key) not in (None, ""):
                candidates.append((type_, source[key]))
    found: dict[Identifier, None] = {}
    rejected: list[InvalidIdentifier] = []
    for type_, value in candidates:
        try:
            found.setdefault(normalise(type_, value))
        except InvalidIdentifier as exc:
            rejected.append(exc)
    return Collected(list(found), rejected)


def _rank(identifier: Identifier, types: Mapping[str, IdentifierType]) -> tuple[int, str, str]:
    kind = types.get(identifier.type)
    return (-(kind.priority if kind else 0), identifier.type, identifier.value)


@dataclass(frozen=True)
class Decision:
    person_id: str
    created: bool
    # Identifiers nobody held before, now attached to person_id.
    attach: tuple[Identifier, ...]


class Resolver:
    """Resolves identifier sets against a map of known owners, updating it as it goes.

    Feed it the owners of every identifier in a batch (one query), then call :meth:`resolve`
    for each event in order: later events see the persons and links earlier ones created.
    """

    def __init__(
        self,
        owners: Mapping[Identifier, str],
        new_person_id: Callable[[], str],
        types: Mapping[str, IdentifierType] = BUILTIN_TYPES,
    ) -> None:
        self.owners: dict[Identifier, str] = dict(owners)
        self._new_person_id = new_person_id
        self._types = types

    def resolve(self, identifiers: Iterable[Identifier]) -> Decision:
        ordered = sorted(set(identifiers), key=lambda i: _rank(i, self._types))
        if not ordered:
            raise ValueError("an identifier set must not be empty")
        matched = [i for i in ordered if i in self.owners]
        unknown = tuple(i for i in ordered if i not in self.owners)
        if matched:
            person_id, created = self.owners[matched[0]], False
        else:
            person_id, created = self._new_person_id(), True
        for identifier in unknown:
            self.owners[identifier] = person_id
        return Decision(person_id, created, unknown)
