"""Customer-value predictions: per workspace, fit BG/NBD and Gamma-Gamma on the orders, predict
every customer, store the predictions, announce those that moved materially.

A recompute is a job (asked through the API, or by the schedule), run by one replica at a time
per workspace, in four steps:

1. read: one SQL statement aggregates the counted orders by customer and day (the models'
   customer-day aggregation) into the RFM summary, read through binary COPY;
2. fit and predict (cdp_analytics, numpy);
3. write: one transaction COPYs the predictions in, stores them under the new model (carrying
   over what was last announced) and drops the previous model's;
4. announce, lane by lane (the marked rows split by person id, ANNOUNCERS lanes at once), in
   batches of ``announce_batch`` persons, one transaction each: one statement takes the lane's
   next marked rows after its cursor and moves the cursor, locks their profiles in person
   order, updates the profiles' computed prediction traits and moves their versions on (values
   from the predictions table, in SQL); then a ProfileChanged each (changed fields and values,
   no snapshot) is enqueued in the outbox. Only rows that moved materially are announced
   (``min_change``); an interrupted announcement is resumed by the next run of the worker
   (from the lanes' cursors).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

import asyncpg
import numpy as np
import structlog
from cdp_analytics import value
from google.protobuf import struct_pb2, timestamp_pb2
from prometheus_client import Counter

from cdp.events.v1 import events_pb2
from cdp_profile import value_repository as repo
from cdp_profile.domain import is_prediction_name
from cdp_profile.rules import WorkspaceSettings
from cdp_profile.structs import timestamp
from cdpkit import outbox
from cdpkit.bus import PROFILE, BusNames, partition_of
from cdpkit.clock import Clock
from cdpkit.errors import InvalidArgument, NotFound
from cdpkit.ids import new_id
from cdpkit.money import currency_exponent
from cdpkit.periodic import Periodic

log = structlog.get_logger(__name__)

ANNOUNCED = Counter("cdp_profile_predictions_announced_total", "ProfileChanged announcements of moved predictions")
# Lanes of a recompute's announcement (announced at once, one transaction each).
ANNOUNCERS = 2
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class PredictionSettings:
    horizon_weeks: int = 12
    clv_months: int = 12
    monthly_discount_rate: float = 0.01
    min_change: float = 0.05
    announce_batch: int = 2000
    # The schedule: every workspace with at least ``min_customers`` customers is recomputed
    # every ``interval_seconds`` (0: only on request).
    interval_seconds: float = 86400.0
    min_customers: int = 100


def prediction_names(horizon_weeks: int) -> tuple[str, ...]:
    """The computed trait names a prediction announces, in the order of value_repository.Announced's values."""
    return ("p_alive", "churn_risk", f"expected_purchases_{horizon_weeks}w", "expected_order_value_minor",
            "predicted_clv_minor")  # fmt: skip


def calibration_bound(calibration_end: date, zone) -> datetime:
    """The first instant after the calibration day, in UTC."""
    return datetime.combine(calibration_end + timedelta(days=1), clock_time(0), tzinfo=zone).astimezone(UTC)


def parse_date(text: str, field: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(field, "must be a date YYYY-MM-DD") from None


class PredictionService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        names: BusNames,
        clock: Clock,
        settings_of: Callable[[asyncpg.Connection, str], Awaitable[WorkspaceSettings]],
        config: PredictionSettings,
    ) -> None:
        self._pool = pool
        self._names = names
        self._clock = clock
        self._settings_of = settings_of
        self.config = config

    # API ----------------------------------------------------------------------------------------

    async def request(self, workspace_id: str, request_id: str, calibration_end: date | None) -> repo.JobRow:
        if request_id and not JOB_ID.match(request_id):
            raise InvalidArgument("request_id", "1-64 letters, digits, - and _, starting with a letter or digit")
        async with self._pool.acquire() as conn:
            job = await repo.insert_job(
                conn, workspace_id, request_id or new_id(), "api", calibration_end, self._clock.now()
            )
        if job.origin != "api" or job.calibration_end != calibration_end:
            raise InvalidArgument("request_id", f"job {job.job_id} exists with other parameters")
        return job

    async def get_job(self, workspace_id: str, job_id: str) -> repo.JobRow:
        async with self._pool.acquire() as conn:
            job = await repo.get_job(conn, workspace_id, job_id)
        if job is None:
            raise NotFound(f"prediction job {job_id} not found")
        return job

    async def list_jobs(self, workspace_id: str, before: tuple[datetime, str] | None, limit: int) -> list[repo.JobRow]:
        async with self._pool.acquire() as conn:
            return await repo.list_jobs(conn, workspace_id, before, limit)

    async def get_model(self, workspace_id: str, model_id: int | None) -> repo.ValueModelRow:
        async with self._pool.acquire() as conn:
            model = await repo.get_model(conn, workspace_id, model_id)
        if model is None:
            raise NotFound(
                "no value model has been fitted" if model_id is None else f"value model {model_id} not found"
            )
        return model

    async def list_models(self, workspace_id: str, before: int | None, limit: int) -> list[repo.ValueModelRow]:
        async with self._pool.acquire() as conn:
            return await repo.list_models(conn, workspace_id, before, limit)

    # The worker ---------------------------------------------------------------------------------

    async def run_next(self) -> bool:
        """Run one open job whose workspace no other replica is recomputing; False when none."""
        async with self._pool.acquire() as conn:
            for job in await repo.open_jobs(conn, 50):
                if not await repo.try_lock_workspace(conn, job.workspace_id):
                    continue  # another replica runs this workspace's job
                try:
                    current = await repo.get_job(conn, job.workspace_id, job.job_id)
                    if current is None or current.state not in ("pending", "running"):
                        continue  # finished meanwhile
                    await self._run(conn, current)
                    return True
                finally:
                    await repo.unlock_workspace(conn, job.workspace_id)
        return False

    async def schedule_due(self) -> int:
        """Queue a recompute for every workspace whose newest job is older than the interval
        (and which has enough customers to fit); returns how many were queued."""
        if self.config.interval_seconds <= 0:
            return 0
        now = self._clock.now()
        queued = 0
        async with self._pool.acquire() as conn:
            for workspace_id in await repo.workspaces_with_orders(conn):
                latest, open_ = await repo.latest_job_time(conn, workspace_id)
                if open_ or (latest is not None and (now - latest).total_seconds() < self.config.interval_seconds):
                    continue
                if not await repo.has_customers(conn, workspace_id, self.config.min_customers):
                    continue
                job_id = f"schedule-{now.strftime('%Y%m%dT%H%M%S')}"
                await repo.insert_job(conn, workspace_id, job_id, "schedule", None, now)
                queued += 1
        return queued

    async def _run(self, conn: asyncpg.Connection, job: repo.JobRow) -> None:
        workspace_id = job.workspace_id
        timings: dict[str, float] = dict(job.timings)
        await repo.update_job(conn, workspace_id, job.job_id, state="running", start_time=self._clock.now())
        try:
            model_id = job.model_id
            if model_id is None:  # else it was written by a run interrupted while announcing
                model_id = await self._recompute(conn, job, timings)
            announced = await self._announce_pending(conn, workspace_id, model_id, job, timings)
        except (value.NotEnoughData, InvalidArgument) as exc:
            await self._fail(conn, job, str(exc), timings)
            return
        except Exception as exc:
            await self._fail(conn, job, f"{type(exc).__name__}: {exc}", timings)
            raise
        await repo.update_job(
            conn,
            workspace_id,
            job.job_id,
            state="succeeded",
            end_time=self._clock.now(),
            announced=job.announced + announced,
            timings=timings,
        )
        log.info(
            "predictions recomputed", workspace=workspace_id, job=job.job_id, model=model_id, announced=announced,
            **{f"{k}_s": round(v, 2) for k, v in timings.items()},
        )  # fmt: skip

    async def _fail(self, conn: asyncpg.Connection, job: repo.JobRow, reason: str, timings: dict) -> None:
        log.warning("prediction job failed", workspace=job.workspace_id, job=job.job_id, reason=reason)
        await repo.update_job(
            conn, job.workspace_id, job.job_id, state="failed", end_time=self._clock.now(), error=reason[:2000],
            timings=timings,
        )  # fmt: skip

    async def _recompute(self, conn: asyncpg.Connection, job: repo.JobRow, timings: dict[str, float]) -> int:
        """Read, fit, predict, write (the job records its model in the same transaction); returns
        the model id."""
        workspace_id = job.workspace_id
        config = self.config
        settings = await self._settings_of(conn, workspace_id)
        now = self._clock.now()
        calibration_end = job.calibration_end or now.astimezone(settings.zone).date()
        scale = 10 ** currency_exponent(settings.currency)

        started = time.perf_counter()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await repo.order_summaries(
                conn,
                workspace_id,
                time_zone=settings.time_zone,
                currency=settings.currency,
                calibration_end=calibration_end,
                before=calibration_bound(calibration_end, settings.zone),
            )
        timings["read"] = time.perf_counter() - started

        started = time.perf_counter()
        x = rows["repeat_days"].astype(float)
        t_x = rows["recency_days"] / 7.0
        T = rows["age_days"] / 7.0
        total = rows["total_minor"].astype(float) / scale
        repeat_total = total - rows["first_day_minor"].astype(float) / scale
        m_x = np.divide(repeat_total, x, out=np.zeros(len(x)), where=x > 0)
        average = total / (x + 1)
        # The fit is CPU-bound for seconds: off the event loop, so the service keeps answering.
        models = await asyncio.to_thread(value.fit, x, t_x, T, m_x)
        timings["fit"] = time.perf_counter() - started

        started = time.perf_counter()
        values = await asyncio.to_thread(
            value.predict,
            models,
            x,
            t_x,
            T,
            m_x,
            average,
            horizon_weeks=config.horizon_weeks,
            months=config.clv_months,
            monthly_discount_rate=config.monthly_discount_rate,
        )
        fresh = {
            "person_id": rows["person_id"],
            "p_alive": values.p_alive,
            "expected_purchases": values.expected_purchases,
            "expected_order_value_minor": np.rint(values.expected_value * scale).astype(np.int64),
            "predicted_clv_minor": np.rint(values.clv * scale).astype(np.int64),
        }
        timings["predict"] = time.perf_counter() - started

        started = time.perf_counter()
        spend = models.spend
        async with conn.transaction():
            model_id = await repo.next_model_id(conn, workspace_id)
            previous = await repo.get_model(conn, workspace_id, None)
            await repo.insert_model(
                conn,
                repo.ValueModelRow(
                    workspace_id=workspace_id,
                    model_id=model_id,
                    job_id=job.job_id,
                    fit_time=now,
                    calibration_end=calibration_end,
                    time_zone=settings.time_zone,
                    currency=settings.currency,
                    customers=len(x),
                    repeat_customers=int((x > 0).sum()),
                    bgnbd_r=models.purchases.r,
                    bgnbd_alpha=models.purchases.alpha,
                    bgnbd_a=models.purchases.a,
                    bgnbd_b=models.purchases.b,
                    bgnbd_log_likelihood=models.purchases.log_likelihood,
                    gg_p=spend.p if spend else None,
                    gg_q=spend.q if spend else None,
                    gg_gamma=spend.gamma if spend else None,
                    gg_log_likelihood=spend.log_likelihood if spend else None,
                    gg_customers=spend.customers if spend else 0,
                    horizon_weeks=config.horizon_weeks,
                    clv_months=config.clv_months,
                    monthly_discount_rate=config.monthly_discount_rate,
                ),
            )
            previous_rows = await repo.current_prediction_model(conn, workspace_id)
            renamed = previous is not None and previous.horizon_weeks != config.horizon_weeks
            _, gone = await repo.write_predictions(
                conn,
                workspace_id,
                model_id,
                previous_rows,
                fresh,
                min_change=config.min_change,
                announce_all=renamed,
                lanes=ANNOUNCERS,
            )
            # Persons who had predictions and have none now (no counted order left, merged away).
            if gone:
                names = prediction_names(config.horizon_weeks)
                await self._announce(conn, workspace_id, settings, names, dict.fromkeys(gone, (None,) * len(names)))
            timings["write"] = time.perf_counter() - started
            await repo.update_job(conn, workspace_id, job.job_id, model_id=model_id, customers=len(x), timings=timings)
        return model_id

    async def _announce_pending(
        self, conn: asyncpg.Connection, workspace_id: str, model_id: int, job: repo.JobRow, timings: dict[str, float]
    ) -> int:
        started = time.perf_counter()
        model = await repo.get_model(conn, workspace_id, model_id)
        assert model is not None
        previous = await repo.list_models(conn, workspace_id, model_id, 1)
        names = prediction_names(model.horizon_weeks)
        removed: tuple[str, ...] = ()
        if previous and previous[0].horizon_weeks != model.horizon_weeks:
            # The horizon changed: the old name is removed where the new one is set.
            removed = (f"expected_purchases_{previous[0].horizon_weeks}w",)

        async def announcer(lane: int) -> int:
            # One per lane, at once: one's statement runs in PostgreSQL while another builds its
            # messages.
            announced = 0
            async with self._pool.acquire() as own:
                while True:
                    async with own.transaction():
                        claimed, changed = await repo.announce_next(
                            own, workspace_id, model_id, lane, self.config.announce_batch, names, removed
                        )
                        if changed:
                            settings = await self._settings_of(own, workspace_id)
                            if removed:
                                changed = [(p, v, (*values, None)) for p, v, values in changed]
                            announced += await self._enqueue(own, workspace_id, settings, names + removed, changed)
                    if claimed < self.config.announce_batch:  # the lane is done (and deleted)
                        return announced

        lanes = await repo.announce_lanes(conn, workspace_id, model_id)
        announced = sum(await asyncio.gather(*(announcer(lane) for lane in lanes)))
        timings["announce"] = timings.get("announce", 0.0) + time.perf_counter() - started
        return announced

    async def _announce(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        settings: WorkspaceSettings,
        names: tuple[str, ...],
        rows: dict[str, tuple[float | int | None, ...]],
    ) -> int:
        """Set these profiles' computed traits ``names`` to their row of values (None removes),
        move their versions on and enqueue their ProfileChanged, in the caller's transaction."""
        versions = await repo.set_computed(conn, workspace_id, names, rows)
        changed = [(person_id, version, rows[person_id]) for person_id, version in versions.items()]
        return await self._enqueue(conn, workspace_id, settings, names, changed)

    async def _enqueue(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        settings: WorkspaceSettings,
        names: tuple[str, ...],
        changed: list[tuple[str, int, tuple[float | int | None, ...]]],
    ) -> int:
        """Enqueue a ProfileChanged for each (person, new version, values of ``names``) whose
        computed traits were just set, in the caller's transaction."""
        if not changed:
            return 0
        now = self._clock.now()
        messages = [
            (workspace_id, subject, f"profile:{workspace_id}:{person_id}:{version}", payload)
            for person_id, version, subject, payload in changed_messages(
                workspace_id, names, changed, timestamp(now), self._names
            )
        ]
        await outbox.enqueue_many(conn, messages)
        if settings.tag_rules_read(is_prediction_name):
            # Rule tags over predictions are re-evaluated by the timer worker (transitions and all).
            await repo.make_due(conn, workspace_id, [person_id for person_id, _, _ in changed], now)
        ANNOUNCED.inc(len(messages))
        return len(messages)


def changed_messages(
    workspace_id: str,
    names: tuple[str, ...],
    changed: list[tuple[str, int, tuple[float | int | None, ...]]],
    change_time: timestamp_pb2.Timestamp,
    bus_names: BusNames,
) -> Iterator[tuple[str, int, str, bytes]]:
    """(person, version, subject, serialized ProfileChanged) for each changed profile: the
    computed.<name> fields changed (sorted) and their values, no snapshot.

    A million of these after a first fit, so each is serialized in parts and concatenated (a
    protobuf message's encoding is the concatenation of its fields' encodings, in any order):
    the fields every message shares once per batch, the values once per distinct set of values,
    only person and version per message."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    fields = [f"computed.{names[i]}" for i in order]
    shared = events_pb2.ProfileChanged(
        workspace_id=workspace_id, changed_fields=fields, change_time=change_time
    ).SerializeToString()
    subjects = [bus_names.subject(PROFILE, str(n)) for n in range(bus_names.partitions)]
    encoded_values: dict[tuple[float | int | None, ...], bytes] = {}
    for person_id, version, values in changed:
        encoded = encoded_values.get(values)
        if encoded is None:
            message = events_pb2.ProfileChanged()
            struct = message.values.fields
            for field, i in zip(fields, order, strict=True):
                value = values[i]
                if value is None:
                    struct[field].null_value = struct_pb2.NULL_VALUE
                else:
                    struct[field].number_value = value
            encoded = encoded_values[values] = shared + message.SerializeToString()
        own = events_pb2.ProfileChanged(person_id=person_id, version=version).SerializeToString()
        yield person_id, version, subjects[partition_of(person_id, bus_names.partitions)], encoded + own


class PredictionWorker(Periodic):
    """Runs queued recomputes and queues scheduled ones (every replica; one job per workspace
    at a time). A failed job is marked failed; the worker goes on."""

    def __init__(self, service: PredictionService, *, poll_seconds: float) -> None:
        super().__init__("profile-predictions", self.run_once, interval=poll_seconds)
        self._service = service

    async def run_once(self) -> bool:
        """Queue what is due, run the next job; true when one ran (look for the next at once)."""
        await self._service.schedule_due()
        return await self._service.run_next()
