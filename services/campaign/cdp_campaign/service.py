"""Journey use cases behind the API, one transaction each: definitions, publishing, instances,
deliveries, reports, coupon pools and workspace settings."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import asyncpg
import yaml

from cdp_campaign import definition as defs
from cdp_campaign import reports, repository
from cdp_campaign.announcements import announcement
from cdp_campaign.domain import DEFAULT_TIME_ZONE, UPDATABLE, Journey, WorkspaceSettings
from cdp_campaign.ports import DependencyError, WorkspaceFacts
from cdp_campaign.providers import DestinationGuard
from cdp_campaign.runner import DATES_BACKFILL, WAKE_CHANNEL, JourneyCatalog, first_run
from cdpkit import outbox
from cdpkit.bus import BusNames
from cdpkit.clock import Clock
from cdpkit.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from cdpkit.fieldmask import paths_to_update
from cdpkit.ids import uuid7
from cdpkit.names import RESOURCE_ID
from cdpkit.pagination import decode_token, encode_token, page_size

LIBRARY = Path(__file__).resolve().parent / "library"
MAX_IMPORT_CODES = 10_000
_CODE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
DELIVERY_STATUSES = ("pending", "sent", "delivered", "failed", "dead", "suppressed")
SETTINGS_FIELDS = frozenset(
    {"quiet_hours_start", "quiet_hours_end", "caps", "caps.per_day", "caps.per_week", "consent_mode"}
)


def library() -> list[tuple[str, dict]]:
    """The ready-made journeys: (template id, document with display_name, description, definition)."""
    return [(path.stem, yaml.safe_load(path.read_text())) for path in sorted(LIBRARY.glob("*.yaml"))]


def _new_etag() -> str:
    return uuid7().hex[-16:]


def _text_position(after) -> bool:
    return isinstance(after, str) and "\x00" not in after


async def _page(
    pool: asyncpg.Pool, fetch, requested_size: int, token: str, *, scope: str, key, valid=_text_position
) -> tuple[list, str]:
    """One keyset page: ``fetch(conn, after, limit)`` reads rows after a position; ``key(row)``
    is a row's position, ``valid(position)`` says whether a token's position is one. The token
    is bound to ``scope`` (the request's filters); its fingerprint is not a secret, so the
    position in it is checked like any input."""
    size = page_size(requested_size)
    position = decode_token(token, scope=scope)
    after = position.get("after") if position is not None else ""
    if position is not None and not valid(after):
        raise InvalidArgument("page_token", "is not a token this API issued")
    async with pool.acquire() as conn:
        rows = await fetch(conn, after, size + 1)
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, encode_token({"after": key(rows[-1])}, scope=scope)


class JourneyService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        names: BusNames | None = None,
        catalog: JourneyCatalog | None = None,
        clock: Clock | None = None,
        facts: WorkspaceFacts | None = None,
        *,
        webhooks: DestinationGuard | None = None,
    ) -> None:
        self._pool = pool
        self._webhooks = webhooks or DestinationGuard()
        self._names = names or BusNames()
        self._catalog = catalog
        self._clock = clock
        self._facts = facts

    async def time_zone(self, workspace_id: str) -> str:
        """The workspace time zone: ProfileSettings.time_zone, the one source of truth."""
        if self._facts is None:
            return DEFAULT_TIME_ZONE
        try:
            return await self._facts.time_zone(workspace_id)
        except DependencyError as exc:
            raise Unavailable(f"the workspace time zone (profile settings) cannot be read: {exc}") from None

    async def create(self, journey: Journey) -> Journey:
        if journey.journey_id and not RESOURCE_ID.match(journey.journey_id):
            raise InvalidArgument("journey_id", "must match [a-z][a-z0-9-]{0,62}")
        if journey.definition:
            journey = replace(journey, definition=defs.canonical(defs.parse(journey.definition)))
        journey = replace(
            journey, journey_id=journey.journey_id or f"jny-{uuid7().hex[-20:]}", state="draft", etag=_new_etag()
        ).validated()
        async with self._pool.acquire() as conn:
            stored = await repository.insert(conn, journey)
        if stored is None:
            raise AlreadyExists(f"journey {journey.journey_id} already exists")
        return stored

    async def get(self, workspace_id: str, journey_id: str) -> Journey:
        async with self._pool.acquire() as conn:
            journey = await repository.get(conn, workspace_id, journey_id)
        if journey is None:
            raise NotFound(f"journey {journey_id} not found")
        return journey

    async def _current(self, conn: asyncpg.Connection, workspace_id: str, journey_id: str, etag: str) -> Journey:
        current = await repository.get(conn, workspace_id, journey_id, for_update=True)
        if current is None:
            raise NotFound(f"journey {journey_id} not found")
        if etag and etag != current.etag:
            raise Aborted("journey was changed by someone else: read it again")
        return current

    async def update(self, changes: Journey, mask: Iterable[str]) -> Journey:
        paths = paths_to_update(mask, UPDATABLE)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._current(conn, changes.workspace_id, changes.journey_id, changes.etag)
            if current.state == "archived":
                raise FailedPrecondition("an archived journey cannot change")
            if "definition" in paths and changes.definition:
                changes = replace(changes, definition=defs.canonical(defs.parse(changes.definition)))
            updated = current.updated_with(changes, paths)
            return await repository.update(conn, replace(updated, etag=_new_etag()))

    async def delete(self, workspace_id: str, journey_id: str, etag: str) -> None:
        """Deletes a journey that is not active; its running instances exit and its pending
        messages are suppressed (reason journey_deleted, announced). Its versions, instances and
        deliveries stay as history (a person's messages, caps); a journey created again with the
        same id publishes version numbers after them (no replica's cache of a version's
        definition can serve the old one) and lists and reports only its own."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._current(conn, workspace_id, journey_id, etag)
            if current.state == "active":
                raise FailedPrecondition("an active journey cannot be deleted: pause it first")
            cancelled = await repository.cancel_journey(conn, workspace_id, journey_id)
            now = self._now()
            await outbox.enqueue_many(conn, [announcement(self._names, row, now) for row in cancelled])
            await repository.delete(conn, workspace_id, journey_id)
        if self._catalog is not None:
            self._catalog.invalidate()

    async def list(self, workspace_id: str, requested_size: int, token: str) -> tuple[list[Journey], str]:
        async def fetch(conn, after, limit):
            return await repository.list_page(conn, workspace_id, after=after, limit=limit)

        return await _page(self._pool, fetch, requested_size, token, scope=workspace_id, key=lambda j: j.journey_id)

    # Publishing

    async def publish(self, workspace_id: str, journey_id: str, etag: str) -> Journey:
        async with self._pool.acquire() as conn:
            draft = await repository.get(conn, workspace_id, journey_id)
        # Only a schedule or a date trigger reads the workspace time zone when published.
        timed = draft is not None and defs.parse(draft.definition).trigger.WhichOneof("kind") in ("schedule", "date")
        tz = defs.zone(await self.time_zone(workspace_id)) if timed else defs.zone("UTC")
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._current(conn, workspace_id, journey_id, etag)
            if current.state == "archived":
                raise FailedPrecondition("an archived journey cannot be published")
            if current.definition != draft.definition:
                raise Aborted("journey was changed while it was being published: publish again")
            checked = defs.check(defs.parse(current.definition), tz=tz)
            for i, step in enumerate(checked.definition.steps):
                refusal = step.WhichOneof("kind") == "webhook" and self._webhooks.check_url(step.webhook.url)
                if refusal:
                    raise InvalidArgument(f"journey.definition.steps[{i}].webhook.url", refusal)
                if step.WhichOneof("kind") == "coupon" and not await repository.get_pool(
                    conn, workspace_id, step.coupon.pool_id
                ):
                    raise InvalidArgument(f"journey.definition.steps[{i}].coupon.pool_id", "no such coupon pool")
            now = self._now()
            # A date journey first backfills the dates of persons campaign has not heard of since
            # it started consuming (its first run then follows; see the runner).
            backfill = checked.definition.trigger.WhichOneof("kind") == "date"
            published = await repository.publish(
                conn,
                current,
                defs.canonical(checked.definition),
                _new_etag(),
                now if backfill else first_run(checked.definition, tz, now),
                run_key=DATES_BACKFILL if backfill else "",
            )
        if self._catalog is not None:
            self._catalog.invalidate()
        return published

    async def pause(self, workspace_id: str, journey_id: str, etag: str) -> Journey:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._current(conn, workspace_id, journey_id, etag)
            if current.state != "active":
                raise FailedPrecondition(f"only an active journey can be paused (it is {current.state})")
            paused = await repository.set_state(conn, workspace_id, journey_id, "paused", _new_etag())
        if self._catalog is not None:
            self._catalog.invalidate()
        return paused

    async def export(self, workspace_id: str, journey_id: str, fmt: str) -> tuple[str, str]:
        fmt = fmt or "yaml"
        if fmt not in ("yaml", "json"):
            raise InvalidArgument("format", "must be yaml or json")
        journey = await self.get(workspace_id, journey_id)
        definition = defs.parse(journey.definition)
        return (defs.to_yaml(definition) if fmt == "yaml" else defs.to_json(definition)), fmt

    # Instances and deliveries

    async def list_instances(self, workspace_id: str, journey_id: str, person_id: str, size: int, token: str):
        async def fetch(conn, after, limit):
            return await repository.list_instances(
                conn, workspace_id, journey_id, person_id=person_id, after=after, limit=limit
            )

        scope = f"{workspace_id}/{journey_id}/{person_id}"
        return await _page(self._pool, fetch, size, token, scope=scope, key=lambda r: str(r["instance_id"]))

    async def list_deliveries(self, workspace_id: str, journey_id: str, status: str, size: int, token: str):
        if status and status not in DELIVERY_STATUSES:
            raise InvalidArgument("status", f"must be one of {', '.join(DELIVERY_STATUSES)}")

        async def fetch(conn, after, limit):
            return await repository.list_deliveries(
                conn, workspace_id, journey_id, status=status, after=after, limit=limit
            )

        scope = f"{workspace_id}/{journey_id}/{status}"
        return await _page(self._pool, fetch, size, token, scope=scope, key=lambda r: r["delivery_id"])

    async def person_messages(self, workspace_id: str, person_id: str, size: int, token: str):
        async def fetch(conn, after, limit):
            try:
                before = (datetime.fromisoformat(after[0]), after[1]) if after else None
            except ValueError:
                raise InvalidArgument("page_token", "is not a token this API issued") from None
            return await repository.person_deliveries(conn, workspace_id, person_id, before=before, limit=limit)

        def valid(after) -> bool:
            return isinstance(after, list) and len(after) == 2 and all(_text_position(part) for part in after)

        scope = f"messages/{workspace_id}/{person_id}"
        return await _page(
            self._pool,
            fetch,
            size,
            token,
            scope=scope,
            key=lambda r: [r["created_at"].isoformat(), r["delivery_id"]],
            valid=valid,
        )

    async def retry_delivery(self, workspace_id: str, journey_id: str, delivery_id: str) -> dict:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await repository.get_delivery(conn, workspace_id, journey_id, delivery_id, for_update=True)
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            if row["status"] not in ("failed", "dead"):
                raise FailedPrecondition(f"only a failed or dead delivery can be retried (it is {row['status']})")
            row.update(status="pending", next_attempt_at=self._now())
            await repository.save_deliveries(conn, [row])
            await conn.execute("SELECT pg_notify($1, 'deliveries')", WAKE_CHANNEL)
            return row

    async def report_status(self, workspace_id: str, journey_id: str, delivery_id: str, status: str, reason: str):
        if status not in ("delivered", "failed"):
            raise InvalidArgument("status", "must be delivered or failed")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await repository.get_delivery(conn, workspace_id, journey_id, delivery_id, for_update=True)
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            if row["status"] == status:
                return row  # a repeated receipt
            if row["status"] not in ("sent", "delivered"):
                raise FailedPrecondition(f"a receipt needs a sent delivery (it is {row['status']})")
            row.update(status=status, reason=reason[:500] if status == "failed" else "")
            await repository.save_deliveries(conn, [row])
            await outbox.enqueue_many(conn, [announcement(self._names, row, self._now())])
            return row

    def _now(self) -> datetime:
        return self._clock.now() if self._clock else datetime.now().astimezone()

    # Reports

    async def report(self, workspace_id: str, journey_id: str):
        journey = await self.get(workspace_id, journey_id)
        holdout = None
        async with self._pool.acquire() as conn:
            published = await repository.version_definition(conn, workspace_id, journey_id, journey.version)
            for step in defs.parse(published).steps if published else ():
                if step.WhichOneof("kind") == "split":
                    holdout = next((v.name for v in step.split.variants if v.holdout), None)
            instances = await repository.report_instances(conn, workspace_id, journey_id)
            deliveries = await repository.report_deliveries(conn, workspace_id, journey_id)
            conversions = await repository.report_conversions_by_step(conn, workspace_id, journey_id)
            coupons = await repository.report_coupons(conn, workspace_id, journey_id)
        rows, uplifts = reports.build(
            [(r["variant"], r["entered"], r["converted"], r["revenue"]) for r in instances],
            [(r["step_id"], r["variant"], r["status"], r["reason"], r["n"]) for r in deliveries],
            [(r["step_id"], r["variant"], r["converted"], r["revenue"]) for r in conversions],
            holdout=holdout,
        )
        return rows, uplifts, coupons

    # Coupon pools

    async def create_pool(
        self, workspace_id: str, pool_id: str, display_name: str, kind: str, prefix: str, length: int
    ):
        if not RESOURCE_ID.match(pool_id):
            raise InvalidArgument("coupon_pool_id", "must match [a-z][a-z0-9-]{0,62}")
        kind = kind or "imported"
        if kind not in ("imported", "generated"):
            raise InvalidArgument("coupon_pool.kind", "must be imported or generated")
        if len(display_name) > 200:
            raise InvalidArgument("coupon_pool.display_name", "at most 200 characters")
        if not re.match(r"^[A-Za-z0-9_-]{0,16}$", prefix):
            raise InvalidArgument("coupon_pool.prefix", "at most 16 letters, digits, '-' or '_'")
        length = length or 10
        if not 8 <= length <= 32:
            raise InvalidArgument("coupon_pool.code_length", "must be 8 to 32")
        async with self._pool.acquire() as conn:
            created = await repository.insert_pool(
                conn,
                {
                    "workspace_id": workspace_id,
                    "pool_id": pool_id,
                    "display_name": display_name,
                    "kind": kind,
                    "prefix": prefix,
                    "code_length": length,
                },
            )
            if not created:
                raise AlreadyExists(f"coupon pool {pool_id} already exists")
            return await repository.get_pool(conn, workspace_id, pool_id)

    async def get_pool(self, workspace_id: str, pool_id: str) -> dict:
        async with self._pool.acquire() as conn:
            pool = await repository.get_pool(conn, workspace_id, pool_id)
        if pool is None:
            raise NotFound(f"coupon pool {pool_id} not found")
        return pool

    async def list_pools(self, workspace_id: str, size: int, token: str):
        async def fetch(conn, after, limit):
            return await repository.list_pools(conn, workspace_id, after=after, limit=limit)

        return await _page(self._pool, fetch, size, token, scope=f"pools/{workspace_id}", key=lambda r: r["pool_id"])

    async def import_codes(self, workspace_id: str, pool_id: str, codes: list[str]) -> tuple[int, int]:
        if not codes or len(codes) > MAX_IMPORT_CODES:
            raise InvalidArgument("codes", f"1 to {MAX_IMPORT_CODES} codes per call")
        for i, code in enumerate(codes):
            if not _CODE.match(code):
                raise InvalidArgument(f"codes[{i}]", "4 to 64 letters, digits, '-' or '_'")
        pool = await self.get_pool(workspace_id, pool_id)
        if pool["kind"] != "imported":
            raise FailedPrecondition("codes can only be imported into an imported pool")
        async with self._pool.acquire() as conn, conn.transaction():
            imported = await repository.import_codes(conn, workspace_id, pool_id, sorted(set(codes)))
        return imported, len(codes) - imported

    # Settings

    async def _shown_zone(self, workspace_id: str) -> str:
        """The time zone shown with the settings (profile's; empty when profile cannot answer:
        the settings themselves are campaign's and still read and written)."""
        try:
            return await self.time_zone(workspace_id)
        except Unavailable:
            return ""

    async def get_settings(self, workspace_id: str) -> tuple[WorkspaceSettings, str]:
        """Campaign's settings and the workspace time zone (profile's)."""
        async with self._pool.acquire() as conn:
            settings = await repository.get_settings(conn, workspace_id)
        return settings, await self._shown_zone(workspace_id)

    async def update_settings(self, changes: WorkspaceSettings, mask: Iterable[str]) -> tuple[WorkspaceSettings, str]:
        mask = list(mask)
        if "time_zone" in mask:
            raise InvalidArgument(
                "settings.time_zone",
                "is the workspace's: set it in the profile settings (workspaces/*/profileSettings, time_zone)",
            )
        paths = paths_to_update(mask, SETTINGS_FIELDS)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await repository.get_settings(conn, changes.workspace_id)
            values = {}
            for path in paths:
                if path in ("caps", "caps.per_day"):
                    values["cap_per_day"] = changes.cap_per_day
                if path in ("caps", "caps.per_week"):
                    values["cap_per_week"] = changes.cap_per_week
                if not path.startswith("caps"):
                    values[path] = getattr(changes, path)
            if "consent_mode" in values and not values["consent_mode"]:
                values["consent_mode"] = current.consent_mode
            updated = await repository.save_settings(conn, replace(current, **values).validated())
        return updated, await self._shown_zone(changes.workspace_id)
