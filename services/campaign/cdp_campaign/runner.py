"""Running journeys: enrolment from triggers, the scheduler that advances instances, goals,
waits for events, coupons, tags, and re-keying on merges.

Each entry point runs in one transaction. Instances are rows in ``instances``; the scheduler
takes the due ones (``wake_at <= now``) with ``FOR UPDATE SKIP LOCKED`` (replicas share the work,
a crash rolls back to the last committed step), runs steps until a wait or the end, and commits.
A send step only inserts a row in ``deliveries`` (idempotent per instance and step); the sender
(delivery.py) delivers it. Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from google.protobuf import json_format

from cdp.events.v1 import events_pb2
from cdp_campaign import definition as defs
from cdp_campaign import repository
from cdp_campaign.domain import assign_variant, revenue_minor
from cdp_campaign.ports import DependencyError, ProfilePort, SegmentPort
from cdpkit import outbox
from cdpkit.bus import CAMPAIGN, BusNames
from cdpkit.clock import Clock
from cdpkit.ids import uuid7

log = structlog.get_logger(__name__)

WAKE_CHANNEL = "cdp_campaign_wake"
MAX_STEPS_PER_RUN = 50
DEPENDENCY_RETRY = timedelta(seconds=30)
DEFAULT_GOAL_WINDOW = "7d"
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


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
    """What the consumers look at, cached for a few seconds, and every published version's
    parsed definition (immutable, cached for good)."""

    def __init__(self, pool: asyncpg.Pool, *, ttl_seconds: float) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._live: dict[str, Live] = {}
        self._loaded_at = float("-inf")
        self._versions: dict[tuple[str, str, int], defs.Checked] = {}
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
            self._versions[key] = checked
        return checked

    async def version(
        self, conn: asyncpg.Connection, workspace_id: str, journey_id: str, version: int
    ) -> defs.Definition:
        key = (workspace_id, journey_id, version)
        if key not in self._versions:
            document = await repository.version_definition(conn, workspace_id, journey_id, version)
            if document is None:
                raise LookupError(f"journey {journey_id} v{version} not found")
            self._parsed(workspace_id, journey_id, version, document)
        return self._versions[key].definition


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
        batch: int = 100,
    ) -> None:
        self._pool = pool
        self._names = names
        self.catalog = catalog
        self._profile = profile
        self._segment = segment
        self._clock = clock
        self._batch = batch

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
                if mode == "after_exit" and latest["state"] == "active":
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

    # Triggers: resolved events

    async def on_events(self, events: Sequence[events_pb2.ResolvedEvent]) -> None:
        live = await self.catalog.live()
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            woke = False
            for resolved in events:
                event = resolved.event
                if event.type != events_pb2.EVENT_TYPE_TRACK or not event.event or not resolved.person_id:
                    continue
                woke |= await self._on_event(conn, live.get(event.workspace_id, _NOTHING), resolved, now)
            if woke:
                await _wake(conn, "instances")

    async def _on_event(
        self, conn: asyncpg.Connection, live: Live, resolved: events_pb2.ResolvedEvent, now: datetime
    ) -> bool:
        """Apply one event; True when an instance became due."""
        event = resolved.event
        ws, person, name = event.workspace_id, resolved.person_id, event.event
        properties = json_format.MessageToDict(event.properties) if event.HasField("properties") else {}
        facts = {"name": name, "properties": properties, "message_id": event.message_id}
        woke = False
        for journey in live.journeys:
            if journey.trigger == "event":
                trigger = journey.definition.trigger.event
                if trigger.name == name and defs.matches(trigger.where, properties):
                    woke |= await self._enrol(conn, journey, person, f"event:{event.message_id}", {"event": facts}, now)
        if name in live.wait_events:
            woke |= await self._end_waits(conn, ws, person, name, properties, now)
        if name in live.branch_events:
            await repository.note_event(conn, ws, person, sorted(live.branch_events[name]), name, now)
        if name in live.goal_events:
            await self._goals(conn, ws, person, name, properties, event.message_id, now)
        if name == "Coupon Redeemed":
            code = properties.get("coupon_code") or properties.get("code") or properties.get("coupon")
            if isinstance(code, str) and code:
                await repository.redeem_code(conn, ws, code, event.message_id, now)
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

    async def _goals(self, conn, ws, person, name, properties, message_id, now) -> None:
        for inst in await repository.goal_candidates(conn, ws, person, now):
            d = await self.catalog.version(conn, ws, inst["journey_id"], inst["version"])
            if not d.HasField("goal") or d.goal.event != name or not defs.matches(d.goal.where, properties):
                continue
            if inst["context"].get("event", {}).get("message_id") == message_id:
                continue  # the event that enrolled the person is not its own conversion
            inst["converted_at"] = now
            inst["revenue_minor"] = revenue_minor(properties, d.goal.revenue_property)
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
                for journey in live.get(change.workspace_id, _NOTHING).journeys:
                    trigger = journey.definition.trigger
                    if (
                        journey.trigger == "segment"
                        and trigger.segment.segment_id == change.segment_id
                        and (trigger.segment.change or "entered") == kind
                    ):
                        context = {"segment": {"segment_id": change.segment_id, "change": kind}}
                        key = f"segment:{kind}:{stamp}"
                        woke |= await self._enrol(conn, journey, change.person_id, key, context, now)
            if woke:
                await _wake(conn, "instances")

    async def on_profile_changes(self, changes: Sequence[events_pb2.ProfileChanged]) -> None:
        live = await self.catalog.live()
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            woke = False
            for change in changes:
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
                    computed = json_format.MessageToDict(change.snapshot.computed)
                    birthday = computed.get("birthday_month_day")
                    expiry = computed.get("next_points_expiry_time")
                    if birthday or expiry:
                        try:
                            expiry_at = datetime.fromisoformat(expiry.replace("Z", "+00:00")) if expiry else None
                        except (AttributeError, ValueError):
                            expiry_at = None
                        await repository.upsert_person_dates(
                            conn,
                            change.workspace_id,
                            change.person_id,
                            birthday if isinstance(birthday, str) else None,
                            expiry_at,
                            change.version,
                        )
            if woke:
                await _wake(conn, "instances")

    async def on_merges(self, merges: Sequence[events_pb2.PersonsMerged]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            for merge in merges:
                for merged in merge.merged_person_ids:
                    if merged != merge.survivor_person_id:
                        moved = await repository.rekey_person(
                            conn, merge.workspace_id, merge.survivor_person_id, merged
                        )
                        log.info("instances re-keyed after a merge", moved=moved, merge_id=merge.merge_id)

    # The scheduler

    async def run_due(self) -> int:
        """Advance up to one batch of due instances; returns how many."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            due = await repository.due_instances(conn, now, self._batch)
            settings: dict[str, Any] = {}
            wake: set[str] = set()
            for inst in due:
                if inst["workspace_id"] not in settings:
                    settings[inst["workspace_id"]] = await repository.get_settings(conn, inst["workspace_id"])
                try:
                    async with conn.transaction():  # a savepoint: one broken instance cannot block the rest
                        await self._advance(conn, inst, settings[inst["workspace_id"]].time_zone, now, wake)
                        await repository.save_instance(conn, inst)
                except (asyncpg.PostgresConnectionError, OSError):
                    raise
                except Exception:
                    log.exception("journey instance failed; it exits", instance=str(inst["instance_id"]))
                    _exit(inst, "error")
                    await repository.save_instance(conn, inst)
            for what in wake:
                await _wake(conn, what)
        return len(due)

    async def _advance(self, conn: asyncpg.Connection, inst: dict, time_zone: str, now: datetime, wake: set) -> None:
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
                target = await self._run_step(conn, inst, d, step, after, time_zone, now, wake)
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

    async def _run_step(self, conn, inst, d, step, after: str, time_zone: str, now: datetime, wake: set) -> str | None:
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
                inst["wake_at"] = defs.next_local_time(
                    now, defs.time_of_day(wait.until_time, "-"), defs.zone(time_zone)
                )
            else:
                inst["wake_at"] = now + defs.duration(wait.timeout, "-")
                inst["wait_event"] = wait.until_event
            return None
        if kind in ("send", "webhook"):
            context = {k: v for k, v in inst["context"].items() if k in ("event", "coupon", "transition", "segment")}
            if kind == "send":
                context["recommendations"] = list(step.send.recommendations)
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
            return after
        if kind == "branch":
            holds = await self._condition(inst, step.branch.condition)
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
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await repository.due_journey_runs(conn, now, 5)
            for row in rows:
                d = await self.catalog.version(conn, row["workspace_id"], row["journey_id"], row["version"])
                journey = LiveJourney(row["workspace_id"], row["journey_id"], row["version"], d)
                settings = await repository.get_settings(conn, row["workspace_id"])
                if journey.trigger == "schedule":
                    await self._broadcast_page(conn, journey, row, now)
                elif journey.trigger == "date":
                    await self._date_run(conn, journey, row, defs.zone(settings.time_zone), now)
        return len(rows)

    async def _broadcast_page(self, conn, journey: LiveJourney, row, now: datetime) -> None:
        trigger = journey.definition.trigger.schedule
        run_key = row["run_key"] or row["next_run_at"].isoformat()
        try:
            persons, token = await self._segment.list_members(
                journey.workspace_id, trigger.segment_id, page_token=row["run_cursor"], page_size=500
            )
        except DependencyError as exc:
            log.warning("broadcast page failed", journey=journey.journey_id, error=str(exc))
            await repository.save_run(
                conn,
                journey.workspace_id,
                journey.journey_id,
                next_run_at=now + DEPENDENCY_RETRY,
                run_key=run_key,
                run_cursor=row["run_cursor"],
            )
            return
        for person in persons:
            await self._enrol(conn, journey, person, f"run:{run_key}", {}, now)
        await _wake(conn, "instances")
        if token:
            next_run, cursor = row["next_run_at"], token
        else:
            every = trigger.every and defs.duration(trigger.every, "-")
            next_run, run_key, cursor = (row["next_run_at"] + every if every else None), "", ""
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
            next_run_at=defs.next_local_time(row["next_run_at"], at, tz),
            run_key="",
            run_cursor="",
        )


def first_run(d: defs.Definition, tz, now: datetime) -> datetime | None:
    """When a freshly published journey's scheduled or date trigger first runs. A recurring
    schedule that started in the past runs its latest due run now, not every missed one."""
    kind = d.trigger.WhichOneof("kind")
    if kind == "schedule":
        run = defs.local_datetime(d.trigger.schedule.start, tz, "-")
        if d.trigger.schedule.every:
            every = defs.duration(d.trigger.schedule.every, "-")
            if run + every <= now:
                run += every * ((now - run) // every)
        return run
    if kind == "date":
        return defs.next_local_time(now, defs.time_of_day(d.trigger.date.at or "09:00", "-"), tz)
    return None


async def _wake(conn: asyncpg.Connection, what: str) -> None:
    """Wake the scheduler ("instances") or the sender ("deliveries") when this transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, what)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _move(inst: dict, target: str, now: datetime) -> None:
    inst.update(step_id=target, phase="ready", wake_at=now, wait_event=None, step_entered_at=now)
    if not target:
        _complete(inst)


def _complete(inst: dict) -> None:
    inst.update(state="completed", wake_at=None, wait_event=None, phase="ready")


def _exit(inst: dict, reason: str) -> None:
    inst.update(state="exited", exit_reason=reason, wake_at=None, wait_event=None, phase="ready")
