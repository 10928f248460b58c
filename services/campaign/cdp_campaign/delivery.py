"""The sender: delivers what send steps put in ``deliveries``, exactly once per (instance, step).

No transaction, lock or connection is held across a network call:

1. look (no lock) at the due rows no sender holds;
2. read their profiles and time zones (gRPC), no transaction;
3. claim and check (one short transaction): those rows still due and free (``FOR UPDATE SKIP
   LOCKED``) get this sender's claim token until ``now + claim_seconds`` (other senders skip them
   meanwhile), then the persons' advisory locks, their recent sends, then consent,
   address, quiet hours (defer to their end), frequency caps (workspace and journey, per person
   and channel, rolling 24 h and 7 days). A message that passes is *reserved*: ``sent_at`` is set,
   so it counts toward the caps of any other sender from this commit on; the rest are settled
   (suppressed, deferred, failed) and announced;
4. send each message (e-mails one after another over one SMTP connection per batch, other
   channels concurrently), committing "at the provider" (``transmitted_at``) right before the
   step a provider cannot take back (the content after SMTP's 354, a webhook's POST), and record
   each one's outcome in a short transaction with its ``CampaignMessage`` announcement (outbox) as
   soon as its provider answered.

A crash re-sends only what was in flight at that moment, after its claim ran out, with the same
idempotency key (the delivery id), which the provider recognises; a message the dead sender had
not started transmitting is sent for the first time, one it had is a re-send
(``cdp_campaign_deliveries_resent_total``). Failures retry with backoff (jittered, or after the
provider's ``Retry-After``; the reservation is released); after the last attempt the delivery is
dead.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

from cdp_campaign import repository, templates
from cdp_campaign.announcements import announcement
from cdp_campaign.domain import (
    WorkspaceSettings,
    address_of,
    cap_refusal,
    consent_refusal,
    person_zone,
    quiet_until,
)
from cdp_campaign.ports import DependencyError, ProfilePort, ProfileView, WorkspaceFacts
from cdp_campaign.providers import OutgoingMessage, Provider, ProviderError, SmtpProvider
from cdp_campaign.runner import DEPENDENCY_RETRY, JourneyCatalog
from cdpkit import outbox
from cdpkit.bus import BusNames
from cdpkit.clock import Clock

log = structlog.get_logger(__name__)
# Seconds kept between the last hand-over to a provider and the end of the sender's claim.
CLAIM_MARGIN = 2.0
RESENT = Counter(
    "cdp_campaign_deliveries_resent_total",
    "Deliveries sent again because their sender stopped while the provider may have taken them",
    ["channel"],
)


@dataclass
class _Plan:
    row: dict
    message: OutgoingMessage | None = None
    error: ProviderError | None = None


class Sender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        names: BusNames,
        catalog: JourneyCatalog,
        profile: ProfilePort,
        providers: dict[str, Provider],
        clock: Clock,
        *,
        facts: WorkspaceFacts,
        batch: int,
        max_attempts: int,
        backoff: tuple[float, ...],
        send_timeout: float,
        claim_seconds: float = 30.0,
    ) -> None:
        self._pool = pool
        self._names = names
        self._catalog = catalog
        self._profile = profile
        self._providers = providers
        self._clock = clock
        self._facts = facts
        self._batch = batch
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._timeout = send_timeout
        self._claim = timedelta(seconds=claim_seconds)

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()

    async def run_once(self) -> int:
        """Check and send one batch of due deliveries; returns how many were looked at."""
        now = self._clock.now()
        claim = uuid.uuid4()
        async with self._pool.acquire() as conn:  # a look, no lock: the calls come first
            candidates = await repository.due_deliveries(conn, now, self._batch)
            if not candidates:
                return 0
            settings = {ws: await repository.get_settings(conn, ws) for ws in {r["workspace_id"] for r in candidates}}
            definitions = {}
            for row in candidates:
                key = (row["workspace_id"], row["journey_id"], row["version"])
                if key not in definitions:
                    try:
                        definitions[key] = await self._catalog.version(conn, *key)
                    except LookupError as exc:
                        definitions[key] = exc
        profiles = await self._profiles([r for r in candidates if r["channel"] != "webhook"])
        zones = {ws: await self._zone(ws) if s.quiet_hours_start else "" for ws, s in settings.items()}
        async with self._pool.acquire() as conn, conn.transaction():
            # Those still due and not taken by another sender meanwhile.
            rows = await repository.claim_deliveries(conn, now, candidates, claim, now + self._claim)
            for row in rows:
                row["claim"] = claim
                if row.pop("resent"):
                    RESENT.labels(row["channel"]).inc()
                    log.warning("sending again a delivery whose sender stopped mid-send", delivery=row["delivery_id"])
            messages = [r for r in rows if r["channel"] != "webhook"]
            await repository.lock_persons(conn, [(r["workspace_id"], r["person_id"]) for r in rows])
            counts = await repository.sent_counts(
                conn, sorted({(r["workspace_id"], r["person_id"], r["channel"]) for r in messages}), now
            )
            sending: list[_Plan] = []
            for row in rows:
                definition = definitions[(row["workspace_id"], row["journey_id"], row["version"])]
                try:
                    if isinstance(definition, Exception):
                        raise definition
                    ws = row["workspace_id"]
                    plan = await self._check(row, definition, profiles, settings[ws], zones[ws], counts, now)
                except Exception as exc:  # one broken delivery must not hold back the batch
                    log.exception("delivery check failed", delivery=row["delivery_id"])
                    plan = _Plan(row, error=ProviderError(f"{type(exc).__name__}: {exc}", permanent=True))
                if plan is not None and plan.message is not None:
                    row["sent_at"] = now  # reserved: counts toward caps while it is being sent
                    sending.append(plan)
                    continue
                if plan is not None:
                    self._record(plan, now)
                row["claim"] = None
            await self._save(conn, rows, claim, now)
        # The claim must still hold when a message is handed over: the last e-mail of a slow
        # sequence starts no later than this (the rest is released, due again at once).
        last_start = time.monotonic() + self._claim.total_seconds() - self._timeout - CLAIM_MARGIN
        recorder = _Recorder(self, claim, now)
        by_channel: dict[str, list[_Plan]] = defaultdict(list)
        for plan in sending:
            by_channel[plan.row["channel"]].append(plan)
        try:
            await asyncio.gather(
                *(self._deliver_channel(c, plans, recorder, last_start) for c, plans in by_channel.items())
            )
        finally:
            await recorder.close()
        return len(rows)

    async def _deliver_channel(self, channel: str, plans: list[_Plan], recorder: _Recorder, last_start: float) -> None:
        """A batch's messages on one channel: over one SMTP connection one after another (so at
        most one of them is at the server when the process dies), else concurrently."""
        provider = self._providers[channel]
        if not isinstance(provider, SmtpProvider):
            await asyncio.gather(*(self._deliver(plan, recorder, provider) for plan in plans))
            return
        async with provider.connection() as connection:
            for n, plan in enumerate(plans):
                if time.monotonic() > last_start:
                    log.warning("slow SMTP server: e-mails released to the next batch", released=len(plans) - n)
                    for rest in plans[n:]:
                        rest.row.update(sent_at=None, claim=None)  # not sent: no attempt, no cap count
                        await recorder.record(rest.row)
                    return
                await self._deliver(plan, recorder, connection)

    async def _save(self, conn: asyncpg.Connection, rows: list[dict], claim, now: datetime) -> None:
        """The rows' new state, if this sender still holds them, with the announcements of the
        settled ones."""
        written = await repository.save_deliveries(conn, rows, claim=claim)
        if len(written) < len(rows):
            log.warning("a sender's claim ran out: another sender took over", lost=len(rows) - len(written))
        settled = [r for r in rows if r["delivery_id"] in written and r["status"] != "pending"]
        await outbox.enqueue_many(conn, [announcement(self._names, row, now) for row in settled])

    async def _deliver(self, plan: _Plan, recorder: _Recorder, via) -> None:
        """Send one message and record its outcome as soon as it is known."""
        await self._send(plan, via, lambda: recorder.transmitting(plan.row))
        self._record(plan, recorder.now)
        plan.row["claim"] = None
        await recorder.record(plan.row)

    async def _zone(self, workspace_id: str) -> str | DependencyError:
        try:
            return await self._facts.time_zone(workspace_id)
        except DependencyError as exc:
            return exc

    async def _profiles(self, rows: list[dict]) -> dict[tuple[str, str], ProfileView | DependencyError | None]:
        keys = sorted({(r["workspace_id"], r["person_id"]) for r in rows})

        async def one(key):
            try:
                return await self._profile.get_profile(*key)
            except DependencyError as exc:
                return exc

        return dict(zip(keys, await asyncio.gather(*(one(k) for k in keys)), strict=True))

    async def _check(
        self, row, definition, profiles, ws_settings: WorkspaceSettings, ws_zone: str | DependencyError, counts, now
    ) -> _Plan | None:
        """The plan for one delivery, or None when it is settled here (suppressed, deferred).

        ``counts`` (sent in the last day / week by journey) grows with what this batch sends."""
        step = next((s for s in definition.steps if s.id == row["step_id"]), None)
        if step is None:
            return _Plan(row, error=ProviderError("the step is gone from the journey", permanent=True))
        if row["channel"] == "webhook":
            try:
                body = await templates.render_async(step.webhook.body, self._context(row, None))
                body = body or _default_webhook_body(row)
            except templates.RenderError as exc:
                return _Plan(row, error=ProviderError(f"template_error: {exc}", permanent=True))
            return _Plan(row, self._message(row, url=step.webhook.url, body=body))
        view = profiles.get((row["workspace_id"], row["person_id"]))
        if isinstance(view, DependencyError):
            if view.retryable:
                return _wait_for_dependency(row, str(view), now)
            return _Plan(row, error=ProviderError(str(view), permanent=True))
        if view is None:
            return _suppress(row, "no_profile")
        refusal = consent_refusal(view.consents, row["channel"], ws_settings.consent_mode)
        if refusal:
            return _suppress(row, refusal)
        address = address_of(view.traits, row["channel"])
        if not address:
            return _suppress(row, "no_address")
        if "cross_sell" in row["context"] and not row["context"]["cross_sell"]:
            return _suppress(row, "no_recommendations")  # a cross-sell message with nothing to offer
        if not step.send.ignore_quiet_hours and ws_settings.quiet_hours_start:
            if isinstance(ws_zone, DependencyError):
                return _wait_for_dependency(row, f"workspace time zone: {ws_zone}", now)
            tz = person_zone(view.traits, ws_zone)
            until = quiet_until(now, tz, ws_settings.quiet_hours_start, ws_settings.quiet_hours_end)
            if until is not None:
                row.update(next_attempt_at=until, deferrals=row["deferrals"] + 1, reason="quiet_hours")
                return None
        sent = counts.setdefault((row["workspace_id"], row["person_id"], row["channel"]), {})
        journey = sent.get(row["journey_id"], (0, 0))
        totals = {
            "workspace_day": sum(day for day, _ in sent.values()),
            "workspace_week": sum(week for _, week in sent.values()),
            "journey_day": journey[0],
            "journey_week": journey[1],
        }
        refusal = cap_refusal(
            totals,
            workspace=ws_settings,
            journey_per_day=definition.caps.per_day,
            journey_per_week=definition.caps.per_week,
        )
        if refusal:
            return _suppress(row, refusal)
        context = self._context(row, view)
        try:
            subject = await templates.render_async(step.send.template.subject, context)
            body = await templates.render_async(step.send.template.body, context)
        except templates.RenderError as exc:
            return _Plan(row, error=ProviderError(f"template_error: {exc}", permanent=True))
        sent[row["journey_id"]] = (journey[0] + 1, journey[1] + 1)
        message = self._message(row, to=address, subject=subject, body=body, template_id=step.send.template.template_id)
        return _Plan(row, message)

    @staticmethod
    def _context(row: dict, view: ProfileView | None) -> dict[str, Any]:
        context = row["context"]
        event = context.get("event") or {}
        # The step's own product ids, then the cross-sell companions (the trigger event's
        # products are the template's event.properties.products).
        recommendations = [{"product_id": p} for p in context.get("recommendations", [])]
        recommendations += context.get("cross_sell", [])
        document = view.document() if view else {"person_id": row["person_id"]}
        return {
            **document,
            "event": event,
            "coupon": context.get("coupon") or {},
            "recommendations": recommendations,
            "journey": {"id": row["journey_id"], "version": row["version"]},
            "variant": row["variant"],
        }

    @staticmethod
    def _message(row: dict, **fields) -> OutgoingMessage:
        return OutgoingMessage(
            delivery_id=row["delivery_id"],
            workspace_id=row["workspace_id"],
            journey_id=row["journey_id"],
            step_id=row["step_id"],
            person_id=row["person_id"],
            channel=row["channel"],
            **fields,
        )

    async def _send(self, plan: _Plan, via, transmitting) -> None:
        assert plan.message is not None
        try:
            await asyncio.wait_for(via.send(plan.message, transmitting), timeout=self._timeout)
        except ProviderError as exc:
            plan.error = exc
        except asyncpg.PostgresError:  # committing "at the provider" failed: the batch is retried
            raise
        except TimeoutError:
            plan.error = ProviderError(f"no answer within {self._timeout:g}s", permanent=False)
        except Exception as exc:
            log.exception("delivery send failed", delivery=plan.message.delivery_id)
            plan.error = ProviderError(f"{type(exc).__name__}: {exc}", permanent=True)

    def _record(self, plan: _Plan, now: datetime) -> None:
        row = plan.row
        row["attempts"] += 1
        if plan.error is None:
            row.update(status="sent", reason="", sent_at=now)
            return
        row["sent_at"] = None  # not sent: the reservation no longer counts toward caps
        if plan.error.permanent:
            row.update(status="failed", reason=str(plan.error)[:500])
        elif row["attempts"] >= self._max_attempts:
            row.update(status="dead", reason=str(plan.error)[:500])
        else:
            delay = retry_delay(self._backoff, row["attempts"], plan.error.retry_after)
            row.update(reason=str(plan.error)[:500], next_attempt_at=now + timedelta(seconds=delay))
            log.warning("delivery failed, will retry", delivery=row["delivery_id"], error=row["reason"], retry_in=delay)


def retry_delay(backoff: tuple[float, ...], attempts: int, retry_after: float | None) -> float:
    """Seconds until the next attempt: the provider's ``Retry-After`` when it gave one (plus up
    to 10 % so that the messages it turned away together do not all come back at once), else the
    backoff step with "equal jitter" (between half of it and all of it)."""
    if retry_after is not None:
        return retry_after + random.uniform(0, retry_after * 0.1)
    step = backoff[min(attempts - 1, len(backoff) - 1)]
    return step / 2 + random.uniform(0, step / 2)


class _Recorder:
    """Commits as providers go: outcomes as they answer, and "at the provider" marks right
    before a message goes (:meth:`transmitting`). One transaction at a time, each taking every
    outcome that arrived meanwhile (a burst of answers is a few commits, not one per message; an
    answer waits at most for the commit before it)."""

    def __init__(self, sender: Sender, claim, now: datetime) -> None:
        self._sender, self._claim, self.now = sender, claim, now
        self._waiting: list[dict] = []
        self._marks: list[dict] = []
        self._lock = asyncio.Lock()
        self._releases: set[asyncio.Task] = set()

    async def transmitting(self, row: dict) -> None:
        """Committed before this returns: the message may reach its provider from now on (a
        sender that dies from here sends it again as a re-send)."""
        self._marks.append(row)
        await self._commit()

    async def record(self, row: dict) -> None:
        self._waiting.append(row)
        await self._commit()

    async def _commit(self) -> None:
        async with self._lock:
            rows, self._waiting = self._waiting, []
            marks, self._marks = self._marks, []
            if not rows and not marks:
                return
            pool = self._sender._pool
            conn = await pool.acquire()
            try:
                async with conn.transaction():
                    await repository.mark_transmitting(conn, marks, self._claim, self.now)
                    await self._sender._save(conn, rows, self._claim, self.now)
            finally:
                # Returning the connection resets it (a round trip): not between the commit and
                # the hand-over it allows, where a crash would count a re-send of nothing.
                release = asyncio.ensure_future(pool.release(conn))
                self._releases.add(release)
                release.add_done_callback(self._releases.discard)

    async def close(self) -> None:
        """Waits until every connection used went back to the pool."""
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)


def _suppress(row: dict, reason: str) -> None:
    row.update(status="suppressed", reason=reason)


def _wait_for_dependency(row: dict, error: str, now: datetime) -> None:
    """Profile (or the time zone it keeps) cannot answer now: the message waits, checked again
    later, without using a provider attempt (an outage must not dead-letter messages nobody tried
    to send)."""
    row.update(next_attempt_at=now + DEPENDENCY_RETRY, reason=f"waiting for profile: {error}"[:500])


def _default_webhook_body(row: dict) -> str:
    return json.dumps(
        {
            "delivery_id": row["delivery_id"],
            "journey_id": row["journey_id"],
            "person_id": row["person_id"],
            "event": row["context"].get("event"),
        }
    )
