"""Running journeys: enrolment from triggers, the scheduler that advances instances, goals,
waits for events, coupons, tags, cross-sell, and re-keying on merges and splits.

Events reach journeys through profile's announcements (``ProfileChanged.events``), not from
identity's resolved events: by the time a journey sees an event, profile has applied it, so the
profile read at send time (address, consent, traits) already reflects it, and events of a
merged-away id arrive under the survivor.

Each consumer batch runs in one transaction. Instances are rows in ``instances``; the scheduler
claims the due ones (``wake_at <= now``, ``FOR UPDATE SKIP LOCKED``, a committed lease: replicas
share the work), makes the calls to profile and segment their current steps need with no
transaction open, then runs steps until a wait, the end or the next step that needs a call, and
commits (a crash rolls back to the last committed step).
A send step only inserts a row in ``deliveries`` (idempotent per instance and step); the sender
(delivery.py) delivers it. Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from cdp.events.v1 import events_pb2
from cdp_campaign import definition as defs
from cdp_campaign import repository
from cdp_campaign.announcements import announcement
from cdp_campaign.domain import assign_variant, next_local_time, person_zone, revenue_minor, storable
from cdp_campaign.ports import CrossSell, DependencyError, ProfilePort, SegmentPort, WorkspaceFacts
from cdpkit import outbox
from cdpkit.bus import CAMPAIGN, BusNames
from cdpkit.clock import Clock
from cdpkit.ids import uuid7

log = structlog.get_logger(__name__)

WAKE_CHANNEL = "cdp_campaign_wake"
MAX_STEPS_PER_RUN = 50
DEPENDENCY_RETRY = timedelta(seconds=30)
DEFAULT_GOAL_WINDOW = "7d"
DEFAULT_CROSS_SELL = 3
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# Profile's typed event for a coupon used (property coupon_id, as in the Segment spec's coupon
# events), and the spec's Order Completed with its `coupon` property.
COUPON_REDEEMED = "Coupon Redeemed"
ORDER_COMPLETED = "Order Completed"
# The run key of a segment-triggered journey's one-off enrolment of the current members.
CURRENT_MEMBERS = "members"
# The run key of a date journey's backfill of person_dates from profile, before its first run.
DATES_BACKFILL = "backfill"
DATES_PAGE = 500


@dataclass(frozen=True)
class LiveJourney:
    workspace_id: str
    journey_id: str
    version: int
    definition: defs.Definition

    @property
    def trigger(self) -> str | None:
        return self.definition.trigger.WhichOneof("kind")


@dataclass
class Live:
    """One workspace's active journeys (they enrol) and the events that active or paused
    journeys' running instances listen for, over every published version."""

    journeys: list[LiveJourney] = field(default_factory=list)
    wait_events: set[str] = field(default_factory=set)
    goal_events: set[str] = field(default_factory=set)
    # event name -> journeys with a branch on "event since entry"
    branch_events: dict[str, set[str]] = field(default_factory=dict)

    def listens(self, name: str) -> bool:
        return name in self.wait_events or name in self.goal_events or name in self.branch_events


_NOTHING = Live()


class JourneyCatalog:
    """What the consumers look at, cached for a few seconds, and published versions' parsed
    definitions (immutable): the ``max_versions`` most recently used are kept, older ones are
    read from the database again when an instance of theirs runs."""

    def __init__(self, pool: asyncpg.Pool, *, ttl_seconds: float, max_versions: int = 1000) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._live: dict[str, Live] = {}
        self._loaded_at = float("-inf")
        self._versions: OrderedDict[tuple[str, str, int], defs.Checked] = OrderedDict()
        self._max_versions = max(1, max_versions)
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def live(self) -> dict[str, Live]:
        if time.monotonic() - self._loaded_at < self._ttl:
            return self._live
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl:
                async with self._pool.acquire() as conn:
                    rows = await repository.live_journey_versions(conn)
                live: dict[str, Live] = {}
                for row in rows:
                    ws, journey_id, version = row["workspace_id"], row["journey_id"], row["version"]
                    checked = self._parsed(ws, journey_id, version, row["definition"])
                    entry = live.setdefault(ws, Live())
                    if row["state"] == "active" and version == row["current_version"]:
                        entry.journeys.append(LiveJourney(ws, journey_id, version, checked.definition))
                    entry.wait_events |= checked.wait_events
                    entry.goal_events |= checked.goal_events
                    for name in checked.branch_events:
                        entry.branch_events.setdefault(name, set()).add(journey_id)
                self._live, self._loaded_at = live, time.monotonic()
        return self._live

    def _parsed(self, workspace_id: str, journey_id: str, version: int, document: dict) -> defs.Checked:
        key = (workspace_id, journey_id, version)
        checked = self._versions.get(key)
        if checked is None:
            checked = defs.event_uses(defs.parse(document))
            self._remember(key, checked)
        else:
            self._versions.move_to_end(key)
        return checked

    def _remember(self, key: tuple[str, str, int], checked: defs.Checked) -> None:
        self._versions[key] = checked
        while len(self._versions) > self._max_versions:
            self._versions.popitem(last=False)

    async def version(
        self, conn: asyncpg.Connection, workspace_id: str, journey_id: str, version: int
    ) -> defs.Definition:
        key = (workspace_id, journey_id, version)
        checked = self._versions.get(key)
        if checked is not None:
            self._versions.move_to_end(key)
            return checked.definition
        document = await repository.version_definition(conn, workspace_id, journey_id, version)
        if document is None:
            raise LookupError(f"journey {journey_id} v{version} not found")
        return self._parsed(workspace_id, journey_id, version, document).definition


class JourneyRunner:
    def __init__(
        self,
        pool: asyncpg.Pool,
        names: BusNames,
        catalog: JourneyCatalog,
        profile: ProfilePort,
        segment: SegmentPort,
        clock: Clock,
        *,
        facts: WorkspaceFacts,
        cross_sell: CrossSell,
        batch: int = 100,
        claim_seconds: float = 30.0,
    ) -> None:
        self._pool = pool
        self._names = names
        self.catalog = catalog
        self._profile = profile
        self._segment = segment
        self._clock = clock
        self._facts = facts
        self._cross_sell = cross_sell
        self._batch = batch
        self._claim = timedelta(seconds=claim_seconds)

    # Enrolment

    async def _enrol(
        self,
        conn: asyncpg.Connection,
        journey: LiveJourney,
        person_id: str,
        trigger_key: str,
        context: dict[str, Any],
        now: datetime,
    ) -> bool:
        d = journey.definition
        mode = d.reentry.mode or "after_exit"
        if mode == "once":
            trigger_key = "once"  # the unique enrolment key is the whole check
        elif mode == "after_exit" or d.reentry.min_interval:
            # Looks at the person's other instances: one enrolment of theirs at a time.
            await repository.lock_enrolment(conn, journey.workspace_id, journey.journey_id, person_id)
            latest = await repository.latest_entry(conn, journey.workspace_id, journey.journey_id, person_id)
            if latest is not None:
                if mode == "after_exit" and latest["active"]:
                    return False
                if d.reentry.min_interval and latest["entered_at"] > now - defs.duration(d.reentry.min_interval, "-"):
                    return False
        goal_deadline = now + defs.duration(d.goal.within or DEFAULT_GOAL_WINDOW, "-") if d.HasField("goal") else None
        inserted = await repository.insert_instance(
            conn,
            {
                "workspace_id": journey.workspace_id,
                "instance_id": uuid7(),
                "journey_id": journey.journey_id,
                "version": journey.version,
                "person_id": person_id,
                "trigger_key": trigger_key,
                "step_id": d.steps[0].id,
                "now": now,
                "context": context,
                "goal_deadline": goal_deadline,
            },
        )
        return inserted

    # Triggers: events (profile's announcements of the events it stored)

    async def _on_event(
        self,
        conn: asyncpg.Connection,
        live: Live,
        ws: str,
        person: str,
        fact: events_pb2.EventFact,
        currency: str,
        now: datetime,
    ) -> bool:
        """Apply one tracked event; True when an instance became due."""
        name = fact.event
        properties = storable(fact.properties) if fact.HasField("properties") else {}
        facts = {"name": name, "properties": properties, "message_id": fact.message_id}
        woke = False
        for journey in live.journeys:
            if journey.trigger == "event":
                trigger = journey.definition.trigger.event
                if trigger.name == name and defs.matches(trigger.where, properties):
                    woke |= await self._enrol(conn, journey, person, f"event:{fact.message_id}", {"event": facts}, now)
        if name in live.wait_events:
            woke |= await self._end_waits(conn, ws, person, name, properties, now)
        if name in live.branch_events:
            await repository.note_event(conn, ws, person, sorted(live.branch_events[name]), name, now)
        if name in live.goal_events:
            await self._goals(conn, ws, person, name, properties, fact.message_id, currency, now)
        code = redeemed_code(name, properties)
        if code:
            await repository.redeem_code(conn, ws, code, fact.message_id, now)
        return woke

    async def _end_waits(self, conn, ws: str, person: str, name: str, properties: dict, now: datetime) -> bool:
        """Instances waiting for this event go on (to on_event). So do those whose current step
        is that wait but which the scheduler has not started yet (enrolled in this same batch)."""
        woke = False
        for inst in await repository.waits_for(conn, ws, person, name):
            d = await self.catalog.version(conn, ws, inst["journey_id"], inst["version"])
            i = defs.step_index(d).get(inst["step_id"])
            if i is None or d.steps[i].WhichOneof("kind") != "wait" or d.steps[i].wait.until_event != name:
                continue
            if not defs.matches(d.steps[i].wait.where, properties):
                continue
            _move(inst, d.steps[i].wait.on_event or defs.following(d, i), now)
            await repository.save_instance(conn, inst)
            woke = True
        return woke

    async def _goals(self, conn, ws, person, name, properties, message_id, currency: str, now) -> None:
        for inst in await repository.goal_candidates(conn, ws, person, now):
            d = await self.catalog.version(conn, ws, inst["journey_id"], inst["version"])
            if not d.HasField("goal") or d.goal.event != name or not defs.matches(d.goal.where, properties):
                continue
            if inst["context"].get("event", {}).get("message_id") == message_id:
                continue  # the event that enrolled the person is not its own conversion
            inst["converted_at"] = now
            inst["revenue_minor"] = revenue_minor(properties, d.goal.revenue_property, currency)
            inst["conversion_step"] = await repository.last_sent_step(conn, ws, inst["instance_id"])
            if d.goal.exit_on_goal and inst["state"] == "active":
                _exit(inst, "goal")
            await repository.save_instance(conn, inst)
            conversion = events_pb2.CampaignConversion(
                workspace_id=ws,
                journey_id=inst["journey_id"],
                instance_id=str(inst["instance_id"]),
                person_id=person,
                variant=inst["variant"],
                step_id=inst["conversion_step"],
                goal_event=name,
                message_id=message_id,
                revenue_minor=inst["revenue_minor"],
            )
            conversion.conversion_time.FromDatetime(now)
            await outbox.enqueue(
                conn,
                workspace_id=ws,
                subject=self._names.subject(CAMPAIGN, "conversion"),
                message=conversion,
                msg_id=f"campaign:conversion:{inst['instance_id']}",
            )

    # Triggers: segment membership, profile changes, merges

    async def on_memberships(self, changes: Sequence[events_pb2.SegmentMembershipChanged]) -> None:
        live = await self.catalog.live()
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            woke = False
            for change in changes:
                kind = "entered" if change.change == events_pb2.SegmentMembershipChanged.CHANGE_ENTERED else "exited"
                if change.change == events_pb2.SegmentMembershipChanged.CHANGE_UNSPECIFIED:
                    continue
                stamp = (
                    change.change_time.ToJsonString() if change.HasField("change_time") else str(change.segment_version)
                )
                # "rule v3 refresh", "segment vip v3 refresh": a rule was created or edited, the
                # person did nothing. Only journeys that include current members take those.
                refresh = change.reason.endswith("refresh")
                for journey in live.get(change.workspace_id, _NOTHING).journeys:
                    trigger = journey.definition.trigger
                    if (
                        journey.trigger == "segment"
                        and trigger.segment.segment_id == change.segment_id
                        and (trigger.segment.change or "entered") == kind
                        and (not refresh or trigger.segment.include_current_members)
                    ):
                        context = {"segment": {"segment_id": change.segment_id, "change": kind}}
                        key = f"segment:{kind}:{stamp}"
                        woke |= await self._enrol(conn, journey, change.person_id, key, context, now)
            if woke:
                await _wake(conn, "instances")

    async def on_profile_changes(self, changes: Sequence[events_pb2.ProfileChanged]) -> None:
        """Events (triggers, waits, goals, coupons), transitions, date attributes, and the
        instances that follow their trigger event to the other side of a split."""
        live = await self.catalog.live()
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            woke = False
            for change in changes:
                try:
                    async with conn.transaction():  # a savepoint: one bad change cannot lose the others
                        woke |= await self._on_profile_change(conn, live, change, now)
                except Exception as exc:
                    if transient(exc):
                        raise
                    log.exception(
                        "a profile change could not be applied; it is skipped",
                        workspace=change.workspace_id,
                        person=change.person_id,
                        version=change.version,
                    )
            if woke:
                await _wake(conn, "instances")

    async def _on_profile_change(
        self, conn: asyncpg.Connection, live: dict[str, Live], change: events_pb2.ProfileChanged, now: datetime
    ) -> bool:
        """One person's change: its events, transitions and date attributes; True when an
        instance became due."""
        woke = False
        ws_live = live.get(change.workspace_id, _NOTHING)
        if change.moved.split_from_person_id and change.moved.message_ids:
            moved = await repository.move_instances_of_events(
                conn,
                change.workspace_id,
                change.moved.split_from_person_id,
                change.person_id,
                list(change.moved.message_ids),
            )
            if moved:
                log.info("instances follow their trigger events after a split", moved=moved)
        for fact in change.events:
            if fact.type == events_pb2.EVENT_TYPE_TRACK and fact.event:
                currency = change.snapshot.currency or "CNY"
                woke |= await self._on_event(conn, ws_live, change.workspace_id, change.person_id, fact, currency, now)
        for transition in change.transitions:
            value = transition.from_value if transition.kind == "tag_removed" else transition.to_value
            for journey in live.get(change.workspace_id, _NOTHING).journeys:
                if journey.trigger != "transition":
                    continue
                wanted = journey.definition.trigger.transition
                if wanted.kind != transition.kind or (wanted.to and wanted.to != value):
                    continue
                if wanted.direction and wanted.direction != transition.direction:
                    continue
                context = {"transition": {"kind": transition.kind, "from": transition.from_value, "to": value}}
                key = f"transition:{transition.kind}:{value}:{change.version}"
                woke |= await self._enrol(conn, journey, change.person_id, key, context, now)
        if change.HasField("snapshot"):
            computed = storable(change.snapshot.computed)
            birthday = computed.get("birthday_month_day")
            expiry = computed.get("next_points_expiry_time")
            try:
                expiry_at = datetime.fromisoformat(expiry.replace("Z", "+00:00")) if expiry else None
            except (AttributeError, ValueError):
                expiry_at = None
            birthday = birthday if isinstance(birthday, str) and birthday else None
            if birthday or expiry_at:
                await repository.upsert_person_dates(
                    conn, change.workspace_id, change.person_id, birthday, expiry_at, change.version
                )
            else:  # a birthday unset, the points spent: no more date triggers
                await repository.forget_person_dates(conn, change.workspace_id, change.person_id, change.version)
        return woke

    async def on_merges(self, merges: Sequence[events_pb2.PersonsMerged]) -> None:
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            for merge in merges:
                for merged in merge.merged_person_ids:
                    if merged != merge.survivor_person_id:
                        moved, suppressed = await repository.rekey_person(
                            conn, merge.workspace_id, merge.survivor_person_id, merged
                        )
                        await outbox.enqueue_many(conn, [announcement(self._names, row, now) for row in suppressed])
                        log.info(
                            "instances re-keyed after a merge",
                            moved=moved,
                            suppressed=len(suppressed),
                            merge_id=merge.merge_id,
                        )

    async def on_splits(self, splits: Sequence[events_pb2.PersonSplit]) -> None:
        """An unmerge or an identifier removal split a person: what a merge brought to it goes
        back. Instances re-keyed at a merge from the id that now resolves to the new person (or
        from an id merged into it before) move to the new person, with their deliveries (caps)
        and coupon codes. Everything else stays with the person that keeps its id; instances
        started by an event that moved to the new person follow that event (profile's split
        announcement, :meth:`on_profile_changes`)."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            for split in splits:
                if not split.new_person_id or split.new_person_id == split.person_id:
                    continue
                origins = sorted({split.new_person_id, *split.moved_person_ids})
                moved = await repository.move_instances_back(
                    conn, split.workspace_id, split.person_id, split.new_person_id, origins, now
                )
                log.info("instances moved back after a split", moved=moved, undone_merge=split.undone_merge_id)

    # The scheduler

    async def run_due(self) -> int:
        """Advance up to one batch of due instances; returns how many.

        No transaction is held across a call to profile or segment. The due instances are
        locked; those whose current step needs no call advance at once, in that transaction; the
        others are claimed (a committed lease: other replicas skip them), their calls are made
        (tags, branch conditions, cross-sell, local times) with no transaction open, then they
        advance from what is stored by then (a consumer may have moved one) in a second
        transaction. A savepoint each. A later step that needs a call ends the run there; the
        instance is due again at once and its next run makes that call."""
        now = self._clock.now()
        claim = uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            due = await repository.due_instances(conn, now, self._batch)
            definitions = {}
            for inst in due:
                key = (inst["workspace_id"], inst["journey_id"], inst["version"])
                if key not in definitions:
                    with contextlib.suppress(LookupError):  # the instance exits below (error)
                        definitions[key] = await self.catalog.version(conn, *key)
            # Instances whose current step needs no call advance now (until a step that needs
            # one); the others are claimed, and advance after their calls.
            calling = [i for i in due if _needs_call(i, definitions.get(_version_key(i)))]
            await self._advance_all(conn, [i for i in due if not _needs_call(i, definitions.get(_version_key(i)))], now)
            await repository.claim_instances(conn, calling, claim, now + self._claim)
        if calling:
            answers = await asyncio.gather(
                *(self._call(inst, definitions[_version_key(inst)], now) for inst in calling)
            )
            fetched = {inst["instance_id"]: answer for inst, answer in zip(calling, answers, strict=True)}
            async with self._pool.acquire() as conn, conn.transaction():
                claimed = await repository.claimed_instances(conn, claim)
                for inst in claimed:
                    inst["_fetched"] = fetched.get(inst["instance_id"], {})
                await self._advance_all(conn, [i for i in claimed if i["wake_at"] and i["wake_at"] <= now], now)
                await repository.release_instances(conn, claim)
        return len(due)

    async def _advance_all(self, conn: asyncpg.Connection, instances: list[dict], now: datetime) -> None:
        """Advance these locked instances, a savepoint each (one broken instance cannot block the
        rest: it exits ``error``)."""
        wake: set[str] = set()
        for inst in instances:
            try:
                async with conn.transaction():
                    await self._advance(conn, inst, now, wake)
                    await repository.save_instance(conn, inst)
            except Exception as exc:
                if transient(exc):
                    raise
                log.exception("journey instance failed; it exits", instance=str(inst["instance_id"]))
                _exit(inst, "error")
                await repository.save_instance(conn, inst)
        for what in wake:
            await _wake(conn, what)

    async def _call(self, inst: dict, d: defs.Definition, now: datetime) -> dict[str, Any]:
        """What the instance's current step needs from profile or segment (see :func:`_needs_call`):
        {step id: answer, or the exception the call raised (raised again when the step runs)}."""
        step = d.steps[defs.step_index(d)[inst["step_id"]]]
        kind, ws, person = step.WhichOneof("kind"), inst["workspace_id"], inst["person_id"]
        try:
            if kind == "wait":
                # The person's local time (trait time_zone), as quiet hours read it; else the workspace's.
                time_zone = await self._facts.time_zone(ws)
                view = await self._profile.get_profile(ws, person)
                answer = person_zone(view.traits, time_zone) if view else defs.zone(time_zone)
            elif kind == "send" and step.send.HasField("cross_sell"):
                answer = await self._cross_sold(inst, d, step.send.cross_sell)
            elif kind == "tag":
                expire_at = now + defs.duration(step.tag.expire_after, "-") if step.tag.expire_after else None
                await self._profile.modify_tags(
                    ws,
                    person,
                    add=list(step.tag.add),
                    remove=list(step.tag.remove),
                    expire_at=expire_at,
                    source=f"journey:{inst['journey_id']}",
                    request_id=f"{inst['instance_id']}.{step.id}",
                )
                answer = True
            else:
                answer = await self._condition(inst, step.branch.condition)
        except Exception as exc:  # noqa: BLE001 - the step raises it when it runs, inside its savepoint
            answer = exc
        return {step.id: answer}

    async def _advance(self, conn: asyncpg.Connection, inst: dict, now: datetime, wake: set) -> None:
        if inst["state"] != "active":
            inst["wake_at"] = None
            return
        d = await self.catalog.version(conn, inst["workspace_id"], inst["journey_id"], inst["version"])
        index = defs.step_index(d)
        for _ in range(MAX_STEPS_PER_RUN):
            if inst["state"] != "active":
                return
            if not inst["step_id"]:
                _complete(inst)
                return
            i = index.get(inst["step_id"])
            if i is None:
                _exit(inst, "unknown_step")
                return
            step = d.steps[i]
            after = defs.following(d, i)
            try:
                target = await self._run_step(conn, inst, d, step, after, now, wake)
            except _CallFirst:
                inst["wake_at"] = now  # the next run makes the call this step needs
                return
            except DependencyError as exc:
                log.warning("journey step failed", step=step.id, error=str(exc), retry=exc.retryable)
                if exc.retryable:
                    inst["wake_at"] = now + DEPENDENCY_RETRY
                else:
                    _exit(inst, f"step_failed:{step.id}")
                return
            if target is None:  # waiting or ended
                return
            _move(inst, target, now)
        inst["wake_at"] = now  # a long run of steps: go on at the next tick

    async def _run_step(self, conn, inst, d, step, after: str, now: datetime, wake: set) -> str | None:
        kind = step.WhichOneof("kind")
        ws, person = inst["workspace_id"], inst["person_id"]
        if kind == "wait":
            wait = step.wait
            if inst["phase"] == "waiting":  # the timer ran out
                return (wait.on_timeout or after) if wait.until_event else after
            inst["phase"], inst["step_entered_at"] = "waiting", now
            if wait.duration:
                inst["wake_at"] = now + defs.duration(wait.duration, "-")
            elif wait.until_time:
                tz = _answer(inst, step)  # the person's zone (see _call)
                inst["wake_at"] = next_local_time(now, defs.time_of_day(wait.until_time, "-"), tz)
            else:
                inst["wake_at"] = now + defs.duration(wait.timeout, "-")
                inst["wait_event"] = wait.until_event
            return None
        if kind in ("send", "webhook"):
            context = {k: v for k, v in inst["context"].items() if k in ("event", "coupon", "transition", "segment")}
            if kind == "send":
                context["recommendations"] = list(step.send.recommendations)
                if step.send.HasField("cross_sell"):
                    context["cross_sell"] = _answer(inst, step)
            await repository.insert_delivery(
                conn,
                {
                    "workspace_id": ws,
                    "delivery_id": f"{inst['instance_id']}.{step.id}",
                    "journey_id": inst["journey_id"],
                    "version": inst["version"],
                    "instance_id": inst["instance_id"],
                    "step_id": step.id,
                    "variant": inst["variant"],
                    "person_id": person,
                    "channel": step.send.channel if kind == "send" else "webhook",
                    "context": context,
                    "now": now,
                },
            )
            wake.add("deliveries")
            return after
        if kind == "coupon":
            code = await self._issue_coupon(conn, inst, step.coupon.pool_id, now)
            if code is None:
                _exit(inst, "no_coupon")
                return None
            inst["context"] = {**inst["context"], "coupon": {"code": code, "pool_id": step.coupon.pool_id}}
            return after
        if kind == "tag":
            _answer(inst, step)  # ModifyProfileTags was called (see _call)
            return after
        if kind == "branch":
            on_events = step.branch.condition.WhichOneof("kind") == "event_since_entry"  # no call: the row has them
            holds = await self._condition(inst, step.branch.condition) if on_events else _answer(inst, step)
            return (step.branch.if_true or after) if holds else (step.branch.if_false or after)
        if kind == "split":
            variants = [(v.name, v.weight) for v in step.split.variants]
            name = assign_variant(inst["journey_id"], step.id, person, variants)
            inst["variant"] = name
            chosen = next(v for v in step.split.variants if v.name == name)
            if chosen.holdout:
                _exit(inst, "holdout")
                return None
            return chosen.next or after
        _exit(inst, "exit_step")
        return None

    async def _cross_sold(self, inst: dict, d: defs.Definition, cross_sell) -> list[dict]:
        """The companions of the person's products, fixed when the step runs (kept with the
        delivery: a re-send after a crash renders the same message)."""
        source = cross_sell.source or ("event" if d.trigger.WhichOneof("kind") == "event" else "last_order")
        if source == "event":
            skus = event_skus(inst["context"].get("event", {}).get("properties", {}))
        else:
            view = await self._profile.get_profile(inst["workspace_id"], inst["person_id"])
            skus = list(view.last_order_skus) if view else []
        return await self._cross_sell.recommend(
            inst["workspace_id"],
            skus,
            limit=cross_sell.max_products or DEFAULT_CROSS_SELL,
            min_lift=cross_sell.min_lift,
        )

    async def _condition(self, inst: dict, condition) -> bool:
        which = condition.WhichOneof("kind")
        if which == "segment_id":
            return await self._segment.is_member(inst["workspace_id"], condition.segment_id, inst["person_id"])
        if which == "event_since_entry":
            return any(seen.get("name") == condition.event_since_entry.name for seen in inst["events_seen"])
        view = await self._profile.get_profile(inst["workspace_id"], inst["person_id"])
        return view is not None and defs.matches([condition.profile], view.document())

    async def _issue_coupon(self, conn, inst: dict, pool_id: str, now: datetime) -> str | None:
        ws, journey, person = inst["workspace_id"], inst["journey_id"], inst["person_id"]
        # Two instances of one person (re-entry, two scheduler replicas) take turns here: the
        # second sees the first's code once it committed, instead of colliding with it.
        await repository.lock_coupon(conn, ws, journey, person)
        existing = await repository.issued_code(conn, ws, journey, person)
        if existing:
            return existing  # at most one per person per campaign: a re-entry gets the same code
        pool = await repository.get_pool(conn, ws, pool_id)
        if pool is None:
            return None
        if pool["kind"] == "imported":
            return await repository.claim_code(conn, ws, pool_id, journey, person, inst["instance_id"], now)
        for _ in range(5):
            code = pool["prefix"] + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(pool["code_length"]))
            if await repository.insert_issued_code(conn, ws, pool_id, code, journey, person, inst["instance_id"], now):
                return code
        return None

    # Scheduled and date triggers

    async def run_due_journeys(self) -> int:
        """Due scheduled, segment (current members) and date runs, a page or a day each.

        No transaction or lock is held across a call: the due journeys are looked at, their
        calls made (a page of ``ListSegmentMembers``, the workspace time zone, a page of
        profile's ``ListProfileDates`` while a date journey backfills), then each is
        locked in a short transaction only if its run is still where the look saw it (the same
        version, due time and page token), and the page enrolled with the run's next position.
        A replica that went on meanwhile wins; the answer read for a page already applied is
        dropped, and enrolment keys are unique per run, so nobody is enrolled twice."""
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            runs = await repository.due_journey_runs(conn, now, 5)
            journeys = []
            for run in runs:
                d = await self.catalog.version(conn, run["workspace_id"], run["journey_id"], run["version"])
                journeys.append(LiveJourney(run["workspace_id"], run["journey_id"], run["version"], d))
        answers = await asyncio.gather(
            *(self._run_call(journey, run) for journey, run in zip(journeys, runs, strict=True))
        )
        for journey, run, answer in zip(journeys, runs, answers, strict=True):
            async with self._pool.acquire() as conn, conn.transaction():
                if not await repository.lock_run(conn, run):
                    continue
                if isinstance(answer, DependencyError):
                    log.warning("scheduled run postponed", journey=journey.journey_id, error=str(answer))
                    await repository.save_run(
                        conn,
                        journey.workspace_id,
                        journey.journey_id,
                        next_run_at=now + DEPENDENCY_RETRY,
                        run_key=run["run_key"] if journey.trigger == "date" else _run_key(journey, run),
                        run_cursor=run["run_cursor"],
                    )
                elif run["run_key"] == DATES_BACKFILL:
                    await self._backfill_page(conn, journey, run, *answer, now)
                elif journey.trigger == "date":
                    await self._date_run(conn, journey, run, answer, now)
                else:
                    await self._broadcast_page(conn, journey, run, answer, now)
        return len(runs)

    async def _run_call(self, journey: LiveJourney, run) -> Any:
        """What a due run needs from outside, with no transaction open: a page of the segment's
        members (persons, next page token), or the workspace time zone of a date run; or the
        DependencyError the call raised."""
        try:
            if run["run_key"] == DATES_BACKFILL:
                page = await self._profile.list_dates(
                    journey.workspace_id, page_token=run["run_cursor"], page_size=DATES_PAGE
                )
                return page, defs.zone(await self._facts.time_zone(journey.workspace_id))
            if journey.trigger == "date":
                return defs.zone(await self._facts.time_zone(journey.workspace_id))
            trigger = journey.definition.trigger
            segment_id = trigger.segment.segment_id if journey.trigger == "segment" else trigger.schedule.segment_id
            return await self._segment.list_members(
                journey.workspace_id, segment_id, page_token=run["run_cursor"], page_size=500
            )
        except DependencyError as exc:
            return exc

    async def _broadcast_page(self, conn, journey: LiveJourney, row, page, now: datetime) -> None:
        """One page of a segment's members enrolled: a scheduled broadcast's run, or the current
        members of a segment-triggered journey that includes them (once per person, ever)."""
        trigger = journey.definition.trigger
        if journey.trigger == "segment":
            segment_id, every = trigger.segment.segment_id, ""
        else:
            segment_id, every = trigger.schedule.segment_id, trigger.schedule.every
        run_key = _run_key(journey, row)
        persons, token = page
        context = {}
        if journey.trigger == "segment":
            context = {"segment": {"segment_id": segment_id, "change": "entered"}}
            # Current members who were never in the journey (a publish again, a live entry
            # meanwhile: nobody twice because of this run).
            persons = await repository.never_enrolled(conn, journey.workspace_id, journey.journey_id, persons)
        for person in persons:
            await self._enrol(conn, journey, person, f"run:{run_key}", context, now)
        await _wake(conn, "instances")
        if token:
            next_run, cursor = row["next_run_at"], token
        else:
            interval = every and defs.duration(every, "-")
            next_run, run_key, cursor = (next_slot(row["next_run_at"], interval, now) if interval else None), "", ""
        await repository.save_run(
            conn, journey.workspace_id, journey.journey_id, next_run_at=next_run, run_key=run_key, run_cursor=cursor
        )

    async def _backfill_page(self, conn, journey: LiveJourney, run, page, tz, now: datetime) -> None:
        """One page of profile's date attributes into ``person_dates`` (persons whose profile has
        not changed since campaign started consuming are known only this way). Idempotent: the
        newest profile version wins, as with announcements. The page token is saved (a restart
        resumes there); after the last page the journey's first date run is scheduled."""
        (dates, token) = page
        for person in dates:
            if person.birthday_month_day or person.points_expiry_at:
                await repository.upsert_person_dates(
                    conn,
                    journey.workspace_id,
                    person.person_id,
                    person.birthday_month_day,
                    person.points_expiry_at,
                    person.version,
                )
        if token:
            next_run, run_key, cursor = run["next_run_at"], DATES_BACKFILL, token
        else:
            at = defs.time_of_day(journey.definition.trigger.date.at or "09:00", "-")
            next_run, run_key, cursor = next_local_time(now, at, tz), "", ""
        await repository.save_run(
            conn, journey.workspace_id, journey.journey_id, next_run_at=next_run, run_key=run_key, run_cursor=cursor
        )

    async def _date_run(self, conn, journey: LiveJourney, row, tz, now: datetime) -> None:
        trigger = journey.definition.trigger.date
        day: date = row["next_run_at"].astimezone(tz).date()
        target = day + timedelta(days=trigger.days_before)
        if trigger.attribute == "birthday":
            month_days = [target.strftime("%m-%d")]
            if month_days[0] == "02-28" and not _leap(target.year):
                month_days.append("02-29")
            persons = await repository.persons_with_birthday(conn, journey.workspace_id, month_days)
        else:
            start = datetime.combine(target, datetime.min.time(), tzinfo=tz)
            persons = await repository.persons_with_expiry(conn, journey.workspace_id, start)
        for person in persons:
            await self._enrol(conn, journey, person, f"date:{day.isoformat()}", {"date": target.isoformat()}, now)
        await _wake(conn, "instances")
        at = defs.time_of_day(trigger.at or "09:00", "-")
        await repository.save_run(
            conn,
            journey.workspace_id,
            journey.journey_id,
            next_run_at=next_local_time(row["next_run_at"], at, tz),
            run_key="",
            run_cursor="",
        )


def _run_key(journey: LiveJourney, run) -> str:
    """A broadcast run's enrolment key (``run:{key}``): the current members' one-off run, or the
    scheduled time of the run (kept while its pages are enrolled, even when it is postponed)."""
    if journey.trigger == "segment":
        return CURRENT_MEMBERS
    return run["run_key"] or run["next_run_at"].isoformat()


def next_slot(run: datetime, every: timedelta, now: datetime) -> datetime:
    """The first run of the schedule ``run + k * every`` after ``now``: runs missed while the
    scheduler was down or behind are skipped, not sent back to back."""
    return run + every * max(1, (now - run) // every + 1)


def first_run(d: defs.Definition, tz, now: datetime) -> datetime | None:
    """When a freshly published journey's scheduled or date trigger first runs. A recurring
    schedule that started in the past runs its latest due run now, not every missed one."""
    kind = d.trigger.WhichOneof("kind")
    if kind == "segment":
        return now if d.trigger.segment.include_current_members else None
    if kind == "schedule":
        run = defs.local_datetime(d.trigger.schedule.start, tz, "-")
        if d.trigger.schedule.every:
            every = defs.duration(d.trigger.schedule.every, "-")
            if run + every <= now:
                run += every * ((now - run) // every)
        return run
    if kind == "date":
        return next_local_time(now, defs.time_of_day(d.trigger.date.at or "09:00", "-"), tz)
    return None


def transient(exc: BaseException) -> bool:
    """An error that says nothing about the data (the connection, a deadlock, a serialization
    failure, a lock or statement timeout, the server shutting down): retry the whole batch."""
    return isinstance(
        exc,
        (
            OSError,
            asyncpg.PostgresConnectionError,
            asyncpg.TransactionRollbackError,
            asyncpg.LockNotAvailableError,
            asyncpg.InsufficientResourcesError,
            asyncpg.OperatorInterventionError,
            asyncpg.InterfaceError,
        ),
    )


def redeemed_code(name: str, properties: dict[str, Any]) -> str:
    """The coupon code an event redeems: Coupon Redeemed's ``coupon_id`` (the Segment spec's name
    on coupon events; ``coupon`` accepted too), or an Order Completed's ``coupon``."""
    if name == COUPON_REDEEMED:
        code = properties.get("coupon_id") or properties.get("coupon")
    elif name == ORDER_COMPLETED:
        code = properties.get("coupon")
    else:
        return ""
    return code.strip() if isinstance(code, str) else ""


def event_skus(properties: dict[str, Any]) -> list[str]:
    """The skus an e-commerce event names: ``products[].sku`` (orders, checkouts) or ``sku``
    (Product Viewed / Added)."""
    skus = []
    products = properties.get("products")
    if isinstance(products, list):
        skus += [p.get("sku") for p in products if isinstance(p, dict)]
    skus.append(properties.get("sku"))
    return [s for s in skus if isinstance(s, str) and s]


async def _wake(conn: asyncpg.Connection, what: str) -> None:
    """Wake the scheduler ("instances") or the sender ("deliveries") when this transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, what)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _version_key(inst: dict) -> tuple[str, str, int]:
    return inst["workspace_id"], inst["journey_id"], inst["version"]


def _needs_call(inst: dict, d: defs.Definition | None) -> bool:
    """Whether the instance's current step calls profile or segment: a wait until a local time
    (the person's zone), a send with cross-sell, a tag, a branch on a segment or the profile."""
    i = defs.step_index(d).get(inst["step_id"]) if d is not None and inst["state"] == "active" else None
    if i is None:
        return False
    step = d.steps[i]
    kind = step.WhichOneof("kind")
    return (
        (kind == "wait" and bool(step.wait.until_time) and inst["phase"] != "waiting")
        or (kind == "send" and step.send.HasField("cross_sell"))
        or kind == "tag"
        or (kind == "branch" and step.branch.condition.WhichOneof("kind") != "event_since_entry")
    )


class _CallFirst(Exception):
    """The step needs a call to profile or segment that this run has not made."""


def _answer(inst: dict, step) -> Any:
    """The answer :meth:`JourneyRunner._call` got for this step in this run (once: a loop back
    to the step calls again), or the exception its call raised."""
    answers = inst.get("_fetched", {})
    if step.id not in answers:
        raise _CallFirst
    answer = answers.pop(step.id)
    if isinstance(answer, Exception):
        raise answer
    return answer


def _move(inst: dict, target: str, now: datetime) -> None:
    inst.update(step_id=target, phase="ready", wake_at=now, wait_event=None, step_entered_at=now)
    if not target:
        _complete(inst)


def _complete(inst: dict) -> None:
    inst.update(state="completed", wake_at=None, wait_event=None, phase="ready")


def _exit(inst: dict, reason: str) -> None:
    inst.update(state="exited", exit_reason=reason, wake_at=None, wait_event=None, phase="ready")
