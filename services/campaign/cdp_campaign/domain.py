"""Journeys and the rules of running them, pure Python (no I/O): the journey resource, the
workspace's campaign settings, A/B assignment, consent, quiet hours, caps and revenue."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdpkit import money
from cdpkit.errors import InvalidArgument

MAX_DISPLAY_NAME = 200
MAX_DESCRIPTION = 2000
MAX_DEFINITION_BYTES = 256 * 1024
UPDATABLE = frozenset({"display_name", "description", "definition"})
STATES = ("draft", "active", "paused", "archived")


@dataclass(frozen=True)
class Journey:
    workspace_id: str
    journey_id: str
    display_name: str
    description: str = ""
    definition: dict[str, Any] = field(default_factory=dict)
    state: str = "draft"
    etag: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    published_at: datetime | None = None

    def validated(self) -> Journey:
        display_name = self.display_name.strip()
        if not display_name:
            raise InvalidArgument("journey.display_name", "is required")
        if len(display_name) > MAX_DISPLAY_NAME:
            raise InvalidArgument("journey.display_name", f"at most {MAX_DISPLAY_NAME} characters")
        if len(self.description) > MAX_DESCRIPTION:
            raise InvalidArgument("journey.description", f"at most {MAX_DESCRIPTION} characters")
        document = json.dumps(self.definition)
        if len(document) > MAX_DEFINITION_BYTES:
            raise InvalidArgument("journey.definition", f"at most {MAX_DEFINITION_BYTES} bytes of JSON")
        for name, value in (
            ("display_name", display_name),
            ("description", self.description),
            ("definition", self.definition),
        ):
            if _has_nul(value):  # PostgreSQL cannot store it (text, jsonb)
                raise InvalidArgument(f"journey.{name}", "must not contain a NUL character")
        return replace(self, display_name=display_name)

    def updated_with(self, changes: Journey, paths: frozenset[str]) -> Journey:
        return replace(self, **{path: getattr(changes, path) for path in paths}).validated()


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


# Runtime rules (pure): A/B assignment, consent, addresses, quiet hours, caps, revenue.

DEFAULT_TIME_ZONE = "Asia/Shanghai"
ADDRESS_TRAITS = {
    "email": ("email",),
    "sms": ("phone",),
    "push": ("push_token", "device_token"),
    "wechat": ("wechat_openid", "openid"),
}
CONSENT_MODES = ("opt_in", "opt_out")


@dataclass(frozen=True)
class WorkspaceSettings:
    """Campaign's own settings of a workspace. The time zone is not among them: it is the
    workspace's (ProfileSettings.time_zone), read through the profile port."""

    workspace_id: str
    quiet_hours_start: str = "21:00"
    quiet_hours_end: str = "09:00"
    cap_per_day: int = 0
    cap_per_week: int = 0
    consent_mode: str = "opt_in"
    updated_at: datetime | None = None

    def validated(self) -> WorkspaceSettings:
        from cdp_campaign.definition import time_of_day

        if bool(self.quiet_hours_start) != bool(self.quiet_hours_end):
            raise InvalidArgument(
                "settings.quiet_hours_start", "set both quiet_hours_start and quiet_hours_end, or neither"
            )
        if self.quiet_hours_start:
            time_of_day(self.quiet_hours_start, "settings.quiet_hours_start")
            time_of_day(self.quiet_hours_end, "settings.quiet_hours_end")
        if self.cap_per_day < 0 or self.cap_per_week < 0:
            raise InvalidArgument("settings.caps", "must not be negative")
        if self.consent_mode not in CONSENT_MODES:
            raise InvalidArgument("settings.consent_mode", "must be opt_in or opt_out")
        return self


def assign_variant(journey_id: str, step_id: str, person_id: str, variants: list[tuple[str, int]]) -> str:
    """A weighted choice that depends only on (journey, step, person): stable across replays,
    restarts and replicas."""
    digest = hashlib.blake2b(f"{journey_id}\0{step_id}\0{person_id}".encode(), digest_size=8).digest()
    total = sum(weight for _, weight in variants)
    point = int.from_bytes(digest, "big") % total
    for name, weight in variants:
        if point < weight:
            return name
        point -= weight
    return variants[-1][0]


_NEVER = datetime.min.replace(tzinfo=UTC)


def consent_refusal(consents, channel: str, mode: str) -> str | None:
    """Why consent stops a marketing message on ``channel`` (None: it may go).

    Profile keeps one statement per key: the channel (``email``) and the channel for a purpose
    (``email.marketing``). The newest of the two decides (a withdrawal wins a tie), so a person
    who unsubscribed (both withdrawn at once) and later opts in again, channel-wide or for
    marketing, gets messages again. In opt_in mode a grant is required; in opt_out mode only a
    withdrawal stops the message.
    """
    relevant = [c for c in consents if c.channel == channel and c.purpose in ("", "marketing")]
    if not relevant:
        return "no_consent" if mode == "opt_in" else None
    deciding = max(relevant, key=lambda c: (c.update_time or _NEVER, not c.granted))
    if deciding.granted:
        return None
    return "unsubscribed" if deciding.source == "unsubscribe_link" else "no_consent"


def address_of(traits: dict[str, Any], channel: str) -> str:
    for key in ADDRESS_TRAITS.get(channel, ()):
        value = traits.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def person_zone(traits: dict[str, Any], workspace_zone: str) -> ZoneInfo:
    for key in ("time_zone", "timezone"):
        name = traits.get(key)
        if isinstance(name, str) and name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                break
    return ZoneInfo(workspace_zone)


def quiet_until(now: datetime, tz: ZoneInfo, start: str, end: str) -> datetime | None:
    """The end of the quiet window ``now`` falls in (local ``start``-``end`` in ``tz``), or None.

    The window may cross midnight (21:00-09:00). The answer is the next local ``end``.
    """
    if not start or not end or start == end:
        return None
    local = now.astimezone(tz)
    begin_t = time.fromisoformat(start)
    end_t = time.fromisoformat(end)
    t = local.time()
    inside = begin_t <= t < end_t if begin_t < end_t else (t >= begin_t or t < end_t)
    if not inside:
        return None
    return next_local_time(now, end_t, tz)


def next_local_time(after: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first moment strictly after ``after`` whose local time in ``tz`` is ``at``.

    Compared as instants, not wall times: in the hour a DST change repeats, 01:30 happens twice
    (``fold`` 0 and 1) and the second one may be the next; in a skipped hour the wall time maps
    to the moment after the gap."""
    local = after.astimezone(tz)
    for day in (local.date(), local.date() + timedelta(days=1)):
        for fold in (0, 1):
            candidate = datetime.combine(day, at, tzinfo=tz).replace(fold=fold)
            if candidate.astimezone(UTC) > after.astimezone(UTC):
                return candidate.astimezone(after.tzinfo)
    raise AssertionError("a local time occurs within two days")  # pragma: no cover


def cap_refusal(
    counts: dict[str, int], *, workspace: WorkspaceSettings, journey_per_day: int, journey_per_week: int
) -> str | None:
    """Which cap a further message would break. ``counts``: messages already sent in the last
    24 hours / 7 days to this person on this channel, workspace-wide and by this journey."""
    if workspace.cap_per_day and counts["workspace_day"] >= workspace.cap_per_day:
        return "cap_workspace_day"
    if workspace.cap_per_week and counts["workspace_week"] >= workspace.cap_per_week:
        return "cap_workspace_week"
    if journey_per_day and counts["journey_day"] >= journey_per_day:
        return "cap_journey_day"
    if journey_per_week and counts["journey_week"] >= journey_per_week:
        return "cap_journey_week"
    return None


def revenue_minor(properties: dict[str, Any], revenue_property: str, workspace_currency: str) -> int:
    """Revenue of a goal event in minor units of the workspace currency, read as profile reads an
    order (``cdpkit.money``): ``revenue_property`` when set (``*_minor``: minor units; else a
    decimal amount), else the order total. An amount in another currency counts 0, as in
    profile's money values."""
    currency = str(properties.get("currency") or workspace_currency).upper()[:3]
    if currency != workspace_currency:
        return 0
    if revenue_property:
        value = properties.get(revenue_property)
        if revenue_property.endswith("_minor"):
            whole = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
            return int(value) if whole else 0
        return money.to_minor(value, currency) or 0
    return money.order_total_minor(properties, currency) or 0


def storable(struct) -> dict[str, Any]:
    """A protobuf ``Struct`` as JSON PostgreSQL stores (jsonb): NUL characters removed from
    strings and keys, numbers that are not finite (NaN, infinities) dropped. One odd property
    must not fail the batch of announcements it arrives in."""
    return {_no_nul(k): v for k, v in ((k, _value(v)) for k, v in struct.fields.items()) if v is not _DROP}


_DROP = object()


def _no_nul(text: str) -> str:
    return text.replace("\x00", "")


def _value(value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return _no_nul(value.string_value)
    if kind == "number_value":
        number = value.number_value
        return number if math.isfinite(number) else _DROP
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return storable(value.struct_value)
    if kind == "list_value":
        return [v for v in (_value(item) for item in value.list_value.values) if v is not _DROP]
    return None
