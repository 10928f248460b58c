"""Journey definitions: the typed proto form, its JSON/YAML forms, and publish-time checks.

``Journey.definition`` (a Struct) is the JSON form of ``cdp.campaign.v1.JourneyDefinition``; it
is parsed strictly (an unknown field is an error), checked (ids, references, durations, times,
cycles, templates), and stored canonically (snake_case names, defaults left out) so that
JSON -> proto -> YAML -> proto round-trips to the same thing. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from google.protobuf import json_format

from cdp.campaign.v1 import campaign_pb2
from cdp_campaign import templates
from cdpkit.errors import InvalidArgument

STEP_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_DURATION = re.compile(r"^(\d{1,6})(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_STEPS = 100
MAX_DURATION = timedelta(days=366)
CHANNELS = ("email", "sms", "push", "wechat")
OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists")
TRANSITION_KINDS = ("tier", "lifecycle_stage", "tag_added", "tag_removed")
DATE_ATTRIBUTES = ("birthday", "points_expiry")
REENTRY = ("once", "after_exit", "always")
CROSS_SELL_SOURCES = ("event", "last_order")
MAX_CROSS_SELL = 10
# A profile tag, as profile's ModifyProfileTags accepts it.
TAG = re.compile(r"^[\w][\w\-:.]{0,62}$")

Definition = campaign_pb2.JourneyDefinition


# Forms


def parse(document: dict[str, Any], field: str = "journey.definition") -> Definition:
    """The typed definition of a JSON-form dict; unknown fields and wrong types are errors."""
    try:
        return json_format.ParseDict(document, Definition(), ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise InvalidArgument(field, str(exc).replace('Message type "cdp.campaign.v1.', '"')) from None


def canonical(definition: Definition) -> dict[str, Any]:
    """The JSON form stored and returned: snake_case names, defaults omitted."""
    return json_format.MessageToDict(definition, preserving_proto_field_name=True)


def to_yaml(definition: Definition) -> str:
    return yaml.safe_dump(canonical(definition), sort_keys=False, allow_unicode=True, width=100)


def to_json(definition: Definition) -> str:
    return json.dumps(canonical(definition), indent=2, ensure_ascii=False)


def from_text(text: str, field: str = "definition_yaml") -> Definition:
    """Parse the YAML form (JSON is YAML too)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(field, f"not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArgument(field, "must be a mapping with trigger and steps")
    return parse(document, field)


# Values


def duration(text: str, field: str) -> timedelta:
    match = _DURATION.match(text.strip()) if text else None
    if not match:
        raise InvalidArgument(field, f"{text!r} is not a duration like 30m, 1h, 7d")
    value = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if not timedelta(0) < value <= MAX_DURATION:
        raise InvalidArgument(field, "must be more than 0 and at most 366d")
    return value


def time_of_day(text: str, field: str) -> time:
    match = _HHMM.match(text or "")
    if not match:
        raise InvalidArgument(field, f"{text!r} is not a local time HH:MM")
    return time(int(match.group(1)), int(match.group(2)))


def zone(name: str, field: str = "time_zone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(field, f"{name!r} is not an IANA time zone") from None


def local_datetime(text: str, tz: ZoneInfo, field: str) -> datetime:
    """``YYYY-MM-DDTHH:MM`` in ``tz``, or RFC 3339 with an offset."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidArgument(field, f"{text!r} is not a date-time like 2026-06-18T10:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


# Conditions


def lookup(document: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path of dicts and lists."""
    current = document
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "in":
        return isinstance(expected, list) and actual in expected
    if op == "contains":
        return isinstance(actual, (list, str)) and expected in actual
    try:
        if op == "gt":
            return actual > expected
        if op == "gte":
            return actual >= expected
        if op == "lt":
            return actual < expected
        if op == "lte":
            return actual <= expected
    except TypeError:
        return False
    return False


def matches(filters, document: dict[str, Any]) -> bool:
    """Every filter holds on ``document`` (event properties or a profile view)."""
    for condition in filters:
        found, actual = lookup(document, condition.property)
        if condition.op == "exists":
            if found != (json_format.MessageToDict(condition.value) is not False):
                return False
            continue
        if not found:
            return False
        expected = json_format.MessageToDict(condition.value) if condition.HasField("value") else None
        if isinstance(actual, int | float) and isinstance(expected, int | float):
            actual, expected = float(actual), float(expected)
        if not _compare(condition.op or "eq", actual, expected):
            return False
    return True


# Navigation


def step_index(definition: Definition) -> dict[str, int]:
    return {step.id: i for i, step in enumerate(definition.steps)}


def following(definition: Definition, index: int) -> str:
    """The step after ``steps[index]``: its ``next``, else the next in the list, else '' (the end)."""
    step = definition.steps[index]
    if step.next:
        return step.next
    return definition.steps[index + 1].id if index + 1 < len(definition.steps) else ""


def successors(definition: Definition, index: int) -> list[str]:
    step = definition.steps[index]
    after = following(definition, index)
    kind = step.WhichOneof("kind")
    if kind == "exit":
        return []
    if kind == "branch":
        return [step.branch.if_true or after, step.branch.if_false or after]
    if kind == "split":
        return [v.next or after for v in step.split.variants if not v.holdout]
    if kind == "wait" and step.wait.until_event:
        return [step.wait.on_event or after, step.wait.on_timeout or after]
    return [after]


# Checks


@dataclass(frozen=True)
class Checked:
    definition: Definition
    # Events the running instances listen for (the trigger's own event is not among them).
    wait_events: frozenset[str] = frozenset()
    branch_events: frozenset[str] = frozenset()
    goal_events: frozenset[str] = frozenset()


def event_uses(definition: Definition) -> Checked:
    waits, branches = set(), set()
    for step in definition.steps:
        kind = step.WhichOneof("kind")
        if kind == "wait" and step.wait.until_event:
            waits.add(step.wait.until_event)
        elif kind == "branch" and step.branch.condition.WhichOneof("kind") == "event_since_entry":
            branches.add(step.branch.condition.event_since_entry.name)
    goals = {definition.goal.event} if definition.HasField("goal") and definition.goal.event else set()
    return Checked(definition, frozenset(waits), frozenset(branches), frozenset(goals))


def _check_filters(filters, field: str) -> None:
    for i, condition in enumerate(filters):
        if not condition.property:
            raise InvalidArgument(f"{field}[{i}].property", "is required")
        if condition.op and condition.op not in OPS:
            raise InvalidArgument(f"{field}[{i}].op", f"must be one of {', '.join(OPS)}")


def _check_trigger(trigger: campaign_pb2.Trigger, tz: ZoneInfo, field: str) -> None:
    kind = trigger.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(field, "is required: event, segment, schedule, date or transition")
    if kind == "event":
        if not trigger.event.name.strip():
            raise InvalidArgument(f"{field}.event.name", "is required")
        _check_filters(trigger.event.where, f"{field}.event.where")
    elif kind == "segment":
        if not trigger.segment.segment_id:
            raise InvalidArgument(f"{field}.segment.segment_id", "is required")
        if trigger.segment.change not in ("", "entered", "exited"):
            raise InvalidArgument(f"{field}.segment.change", "must be entered or exited")
        if trigger.segment.include_current_members and trigger.segment.change == "exited":
            raise InvalidArgument(f"{field}.segment.include_current_members", "only with change entered")
    elif kind == "schedule":
        if not trigger.schedule.segment_id:
            raise InvalidArgument(f"{field}.schedule.segment_id", "is required")
        local_datetime(trigger.schedule.start, tz, f"{field}.schedule.start")
        if trigger.schedule.every:
            duration(trigger.schedule.every, f"{field}.schedule.every")
    elif kind == "date":
        if trigger.date.attribute not in DATE_ATTRIBUTES:
            raise InvalidArgument(f"{field}.date.attribute", f"must be one of {', '.join(DATE_ATTRIBUTES)}")
        if not 0 <= trigger.date.days_before <= 365:
            raise InvalidArgument(f"{field}.date.days_before", "must be between 0 and 365")
        if trigger.date.at:
            time_of_day(trigger.date.at, f"{field}.date.at")
    elif kind == "transition":
        if trigger.transition.kind not in TRANSITION_KINDS:
            raise InvalidArgument(f"{field}.transition.kind", f"must be one of {', '.join(TRANSITION_KINDS)}")
        if trigger.transition.direction not in ("", "upgrade", "downgrade"):
            raise InvalidArgument(f"{field}.transition.direction", "must be upgrade or downgrade")


def _has_wait_on_every_cycle(definition: Definition) -> str | None:
    """A step on a cycle without a wait (which would spin), or None."""
    index = step_index(definition)
    state: dict[str, int] = {}

    def visit(step_id: str, waited: bool, path: list[tuple[str, bool]]) -> str | None:
        if not step_id:
            return None
        on_path = [s for s, _ in path]
        if step_id in on_path:
            start = on_path.index(step_id)
            if not any(w for _, w in path[start:]):
                return step_id
            return None
        if state.get(step_id) == 2:
            return None
        i = index[step_id]
        is_wait = definition.steps[i].WhichOneof("kind") == "wait"
        for nxt in successors(definition, i):
            found = visit(nxt, is_wait, [*path, (step_id, is_wait)])
            if found:
                return found
        state[step_id] = 2
        return None

    return visit(definition.steps[0].id, False, []) if definition.steps else None


# Steps that act once per instance (keyed by instance and step: a message, a webhook call, a
# tag request): on a loop they would silently do nothing the second time round.
_ONCE_PER_INSTANCE = ("send", "webhook", "tag")


def _once_per_instance_on_a_loop(definition: Definition) -> str | None:
    """A send, webhook or tag step that the journey can come back to, or None."""
    index = step_index(definition)
    for i, step in enumerate(definition.steps):
        if step.WhichOneof("kind") not in _ONCE_PER_INSTANCE:
            continue
        seen: set[str] = set()
        todo = [n for n in successors(definition, i) if n]
        while todo:
            current = todo.pop()
            if current == step.id:
                return step.id
            if current not in seen:
                seen.add(current)
                todo += [n for n in successors(definition, index[current]) if n]
    return None


def _coupon_on_every_path(definition: Definition) -> dict[str, bool]:
    """For each step: is a coupon issued on every path from the first step to it?"""
    index = step_index(definition)
    result: dict[str, bool] = {}
    # Fixed point over "all predecessors have a coupon (or are one)".
    predecessors: dict[str, list[str]] = {s.id: [] for s in definition.steps}
    for i, step in enumerate(definition.steps):
        for nxt in successors(definition, i):
            if nxt:
                predecessors[nxt].append(step.id)
    for step in definition.steps:
        result[step.id] = True
    result[definition.steps[0].id] = False
    changed = True
    while changed:
        changed = False
        for step in definition.steps[1:]:
            preds = predecessors[step.id]
            value = bool(preds) and all(
                result[p] or definition.steps[index[p]].WhichOneof("kind") == "coupon" for p in preds
            )
            if value != result[step.id]:
                result[step.id] = value
                changed = True
    return result


def _check_template(source: str, available: frozenset[str], field: str) -> None:
    try:
        templates.check(source, available)
    except templates.TemplateProblem as exc:
        raise InvalidArgument(field, str(exc)) from None


def check(definition: Definition, *, tz: ZoneInfo, field: str = "journey.definition") -> Checked:
    """Everything a publish needs to hold; raises InvalidArgument naming the field."""
    _check_trigger(definition.trigger, tz, f"{field}.trigger")
    if definition.reentry.mode and definition.reentry.mode not in REENTRY:
        raise InvalidArgument(f"{field}.reentry.mode", f"must be one of {', '.join(REENTRY)}")
    if definition.reentry.min_interval:
        duration(definition.reentry.min_interval, f"{field}.reentry.min_interval")
    if definition.HasField("goal"):
        if not definition.goal.event:
            raise InvalidArgument(f"{field}.goal.event", "is required")
        if definition.goal.within:
            duration(definition.goal.within, f"{field}.goal.within")
        _check_filters(definition.goal.where, f"{field}.goal.where")
    for name in ("per_day", "per_week"):
        if getattr(definition.caps, name) < 0:
            raise InvalidArgument(f"{field}.caps.{name}", "must not be negative")
    if not definition.steps:
        raise InvalidArgument(f"{field}.steps", "at least one step is required")
    if len(definition.steps) > MAX_STEPS:
        raise InvalidArgument(f"{field}.steps", f"at most {MAX_STEPS} steps")
    ids: set[str] = set()
    for i, step in enumerate(definition.steps):
        if not STEP_ID.match(step.id):
            raise InvalidArgument(f"{field}.steps[{i}].id", "must match [a-z][a-z0-9_-]{0,62}")
        if step.id in ids:
            raise InvalidArgument(f"{field}.steps[{i}].id", f"{step.id!r} is used twice")
        ids.add(step.id)

    def ref(value: str, where: str) -> None:
        if value and value not in ids:
            raise InvalidArgument(where, f"no step {value!r}")

    coupons = None
    splits = 0
    base_vars = templates.VARIABLES - {"event", "coupon"}
    if definition.trigger.WhichOneof("kind") == "event":
        base_vars = base_vars | {"event"}
    for i, step in enumerate(definition.steps):
        at = f"{field}.steps[{i}]"
        ref(step.next, f"{at}.next")
        kind = step.WhichOneof("kind")
        if kind is None:
            raise InvalidArgument(at, "needs one of wait, branch, split, send, coupon, tag, webhook, exit")
        if kind == "wait":
            wait = step.wait
            chosen = [n for n in ("duration", "until_time", "until_event") if getattr(wait, n)]
            if len(chosen) != 1:
                raise InvalidArgument(f"{at}.wait", "needs exactly one of duration, until_time, until_event")
            if wait.duration:
                duration(wait.duration, f"{at}.wait.duration")
            if wait.until_time:
                time_of_day(wait.until_time, f"{at}.wait.until_time")
            if wait.until_event:
                duration(wait.timeout, f"{at}.wait.timeout")
                _check_filters(wait.where, f"{at}.wait.where")
            ref(wait.on_event, f"{at}.wait.on_event")
            ref(wait.on_timeout, f"{at}.wait.on_timeout")
        elif kind == "branch":
            condition = step.branch.condition
            which = condition.WhichOneof("kind")
            if which is None:
                raise InvalidArgument(f"{at}.branch.condition", "needs profile, segment_id or event_since_entry")
            if which == "profile":
                _check_filters([condition.profile], f"{at}.branch.condition.profile")
            if which == "event_since_entry":
                if not condition.event_since_entry.name:
                    raise InvalidArgument(f"{at}.branch.condition.event_since_entry.name", "is required")
                if condition.event_since_entry.where:
                    raise InvalidArgument(f"{at}.branch.condition.event_since_entry.where", "is not supported here")
            ref(step.branch.if_true, f"{at}.branch.if_true")
            ref(step.branch.if_false, f"{at}.branch.if_false")
        elif kind == "split":
            splits += 1
            if splits > 1:
                raise InvalidArgument(f"{at}.split", "one split per journey (reports compare its variants)")
            variants = step.split.variants
            if len(variants) < 2:
                raise InvalidArgument(f"{at}.split.variants", "at least two variants")
            names = set()
            for v, variant in enumerate(variants):
                if not STEP_ID.match(variant.name) or variant.name in names:
                    raise InvalidArgument(f"{at}.split.variants[{v}].name", "must be a unique [a-z][a-z0-9_-]{0,62}")
                names.add(variant.name)
                if variant.weight == 0 or variant.weight > 10000:
                    raise InvalidArgument(f"{at}.split.variants[{v}].weight", "must be 1 to 10000")
                ref(variant.next, f"{at}.split.variants[{v}].next")
            if sum(1 for v in variants if v.holdout) > 1:
                raise InvalidArgument(f"{at}.split.variants", "at most one holdout")
        elif kind == "send":
            send = step.send
            if send.channel not in CHANNELS:
                raise InvalidArgument(f"{at}.send.channel", f"must be one of {', '.join(CHANNELS)}")
            if not send.template.body and not send.template.template_id:
                raise InvalidArgument(f"{at}.send.template.body", "is required")
            if send.channel == "email" and not send.template.subject:
                raise InvalidArgument(f"{at}.send.template.subject", "is required for email")
            if coupons is None:
                coupons = _coupon_on_every_path(definition)
            available = base_vars | ({"coupon"} if coupons[step.id] else frozenset())
            _check_template(send.template.subject, available, f"{at}.send.template.subject")
            _check_template(send.template.body, available, f"{at}.send.template.body")
            if send.HasField("cross_sell"):
                cross_sell = send.cross_sell
                source = cross_sell.source or (
                    "event" if definition.trigger.WhichOneof("kind") == "event" else "last_order"
                )
                if source not in CROSS_SELL_SOURCES:
                    raise InvalidArgument(f"{at}.send.cross_sell.source", "must be event or last_order")
                if source == "event" and definition.trigger.WhichOneof("kind") != "event":
                    raise InvalidArgument(f"{at}.send.cross_sell.source", "event needs an event-triggered journey")
                if not 0 <= cross_sell.max_products <= MAX_CROSS_SELL:
                    raise InvalidArgument(f"{at}.send.cross_sell.max_products", f"must be 1 to {MAX_CROSS_SELL}")
                if cross_sell.min_lift < 0:
                    raise InvalidArgument(f"{at}.send.cross_sell.min_lift", "must not be negative")
        elif kind == "coupon":
            if not STEP_ID.match(step.coupon.pool_id):
                raise InvalidArgument(f"{at}.coupon.pool_id", "is required ([a-z][a-z0-9-]{0,62})")
        elif kind == "tag":
            if not step.tag.add and not step.tag.remove:
                raise InvalidArgument(f"{at}.tag", "add or remove at least one tag")
            for name in ("add", "remove"):
                for t, tag in enumerate(getattr(step.tag, name)):
                    if not TAG.match(tag):
                        raise InvalidArgument(f"{at}.tag.{name}[{t}]", "a tag is 1-63 letters, digits, _ - : .")
            if step.tag.expire_after:
                duration(step.tag.expire_after, f"{at}.tag.expire_after")
        elif kind == "webhook":
            if not re.match(r"^https?://[^\s/]+", step.webhook.url):
                raise InvalidArgument(f"{at}.webhook.url", "must be an http(s) URL")
            if coupons is None:
                coupons = _coupon_on_every_path(definition)
            available = (base_vars - templates.PROFILE_VARIABLES) | ({"coupon"} if coupons[step.id] else frozenset())
            _check_template(step.webhook.body, available, f"{at}.webhook.body")
    spinning = _has_wait_on_every_cycle(definition)
    if spinning:
        raise InvalidArgument(f"{field}.steps", f"step {spinning!r} is on a loop without a wait")
    looped = _once_per_instance_on_a_loop(definition)
    if looped:
        raise InvalidArgument(
            f"{field}.steps",
            f"step {looped!r} is on a loop: a send, webhook or tag step acts once per instance; "
            "for recurring messages use a recurring schedule or re-entry",
        )
    return event_uses(definition)
