"""Campaign with the REAL profile and segment services beside it, in one event loop on one
ManualClock (real PostgreSQL, NATS and gRPC sockets), plus campaign alone for tests of its own
bookkeeping. Used by tests/integration (several components: the repository's level) and, for
campaign alone, by services/campaign/tests (loaded by path: a component's tests import no other
component).

Events enter as identity publishes them (resolved events on ``{prefix}.resolved.N``); profile
stores them and announces them, segment keeps its memberships from profile's announcements, and
campaign reacts to both, reading profiles (addresses, consent, traits) and the workspace time zone
from profile and memberships and product companions from segment, all over gRPC.

Campaign alone (``real=False``): events are published as profile announces them, and the profile
and segment targets point at a closed port, so a call there would fail visibly.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import nats
from google.protobuf import field_mask_pb2, struct_pb2

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_campaign import __main__ as campaign_main
from cdpkit.bus import BusNames
from cdpkit.clock import ManualClock
from cdpkit.config import load
from cdpkit.migrate import migrate


def _e2e(name: str):
    """A helper module of tests/e2e, loaded by path (this module is itself loaded by path from a
    component's tests, where the package ``tests`` must not be imported)."""
    path = Path(__file__).resolve().parents[1] / "e2e" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cdp_campaign_harness_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_kit = _e2e("campaign_kit")
_receivers = _e2e("delivery_receivers")
eventually = _receivers.eventually

WS = "shop"
# 10:00 in Shanghai (the workspace time zone by default): outside the default quiet hours.
START = datetime(2026, 6, 18, 2, 0, tzinfo=UTC)
NOWHERE = "127.0.0.1:1"  # campaign alone: nothing answers there


def new_person() -> str:
    return str(uuid.uuid4())


async def len_is(coro, n: int) -> bool:
    """``eventually(lambda: len_is(c.instances("j"), 2))``: a listing reached ``n`` rows."""
    return len(await coro) == n


@dataclass
class Campaign:
    runtime: object
    stub: campaign_pb2_grpc.JourneyServiceStub
    clock: ManualClock
    names: BusNames
    js: object
    profile: profile_pb2_grpc.ProfileServiceStub | None = None
    segment: segment_pb2_grpc.SegmentServiceStub | None = None
    _counter: list[int] = field(default_factory=lambda: [0])

    def _message_id(self, prefix: str) -> str:
        self._counter[0] += 1
        return f"{prefix}-{self._counter[0]}"

    async def journey(self, journey_id: str, definition: dict, *, publish: bool = True) -> campaign_pb2.Journey:
        if publish:
            return await _kit.publish_journey(self.stub, WS, journey_id, definition)
        struct = struct_pb2.Struct()
        struct.update(definition)
        return await self.stub.CreateJourney(
            campaign_pb2.CreateJourneyRequest(
                parent=f"workspaces/{WS}",
                journey_id=journey_id,
                journey=campaign_pb2.Journey(display_name=journey_id, definition=struct),
            )
        )

    async def track(self, person_id: str, event: str, message_id: str = "", nats_id: str = "", **properties) -> str:
        """A track event of the person now: through identity's subject to the real profile (whose
        announcement campaign takes), or, campaign alone, as profile would announce it."""
        message_id = message_id or self._message_id("m")
        if self.profile is None:
            await _kit.publish_profile_event(
                self.js, self.names, WS, person_id, event, message_id, at=self.clock.now(), **properties
            )
        else:
            await _kit.publish_resolved(
                self.js,
                self.names,
                WS,
                person_id,
                event,
                message_id,
                nats_id=nats_id,
                at=self.clock.now(),
                **properties,
            )
        return message_id

    async def identify(self, person_id: str, **traits) -> None:
        await _kit.publish_resolved(
            self.js, self.names, WS, person_id, "", self._message_id("id"), at=self.clock.now(), traits=traits
        )

    async def get_profile(self, person_id: str) -> profile_pb2.Profile | None:
        try:
            return await self.profile.GetProfile(
                profile_pb2.GetProfileRequest(name=f"workspaces/{WS}/profiles/{person_id}")
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def profile_is(self, person_id: str, predicate, what: str = "the profile") -> profile_pb2.Profile:
        async def check():
            found = await self.get_profile(person_id)
            return found if found is not None and predicate(found) else None

        return await eventually(check, what=what)

    async def person(self, consents: tuple[str, ...] = ("email",), **traits) -> str:
        """A new person in the real profile: consent granted on ``consents`` through profile's
        UpdateConsent first (an "Account Created" event makes the profile), then these traits
        (an identify), so that a segment entry they cause finds the consent there."""
        person_id = new_person()
        if consents:
            await self.track(person_id, "Account Created")
            await self.profile_is(person_id, lambda p: True, "a new profile")
            for channel in consents:
                await self.consent(person_id, channel, True)
        await self.identify(person_id, **traits)
        await self.profile_is(person_id, lambda p: set(traits) <= set(p.traits.keys()), "the traits")
        return person_id

    async def people(self, emails: list[str], consents: tuple[str, ...] = ()) -> list[str]:
        """Many new persons at once (an identify each, published together)."""
        persons = [new_person() for _ in emails]
        await asyncio.gather(*(self.identify(p, email=e) for p, e in zip(persons, emails, strict=True)))
        for person_id in persons:
            await self.profile_is(person_id, lambda p: "email" in p.traits, "the new profiles")
            for channel in consents:
                await self.consent(person_id, channel, True)
        return persons

    async def consent(self, person_id: str, channel: str, granted: bool, purpose: str = "") -> None:
        request = profile_pb2.UpdateConsentRequest(
            name=f"workspaces/{WS}/profiles/{person_id}", channel=channel, purpose=purpose, granted=granted
        )
        request.statement_time.FromDatetime(self.clock.now())
        await self.profile.UpdateConsent(request)

    async def profile_settings(self, **document) -> profile_pb2.ProfileSettings:
        settings = profile_pb2.ProfileSettings(name=f"workspaces/{WS}/profileSettings")
        for key, value in document.items():
            if isinstance(value, list):
                getattr(settings, key).extend(value)
            elif isinstance(value, dict):
                getattr(settings, key).update(value)
            else:
                setattr(settings, key, value)
        return await self.profile.UpdateProfileSettings(
            profile_pb2.UpdateProfileSettingsRequest(
                settings=settings, update_mask=field_mask_pb2.FieldMask(paths=list(document))
            )
        )

    async def create_segment(self, segment_id: str, rule: str) -> segment_pb2.Segment:
        return await self.segment.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                parent=f"workspaces/{WS}",
                segment_id=segment_id,
                segment=segment_pb2.Segment(display_name=segment_id, rule=rule),
            )
        )

    async def is_member(self, segment_id: str, person_id: str) -> bool:
        answer = await self.segment.CheckMembership(
            segment_pb2.CheckMembershipRequest(parent=f"workspaces/{WS}/segments/{segment_id}", person_id=person_id)
        )
        return answer.member

    async def deliveries(self, journey_id: str = "-", status: str = "") -> list[campaign_pb2.Delivery]:
        page = await self.stub.ListDeliveries(
            campaign_pb2.ListDeliveriesRequest(
                parent=f"workspaces/{WS}/journeys/{journey_id}", status=status, page_size=1000
            )
        )
        return list(page.deliveries)

    async def instances(self, journey_id: str) -> list[campaign_pb2.JourneyInstance]:
        page = await self.stub.ListJourneyInstances(
            campaign_pb2.ListJourneyInstancesRequest(parent=f"workspaces/{WS}/journeys/{journey_id}", page_size=1000)
        )
        return list(page.instances)

    async def tick(self) -> None:
        """Run the scheduler and the sender until nothing is due at the clock's time (the workers
        run too, so this also waits for what they hold to commit)."""
        now = self.clock.now()
        for _ in range(500):
            busy = await self.runtime.runner.run_due_journeys()
            busy += await self.runtime.runner.run_due()
            busy += await self.runtime.sender.run_once()
            due = await self.runtime.pool.fetchval(
                """SELECT (SELECT count(*) FROM instances WHERE wake_at <= $1)
                        + (SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1)
                        + (SELECT count(*) FROM journeys WHERE next_run_at <= $1 AND state = 'active')""",
                now,
            )
            if not busy and not due:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("work stays due")


async def _start(module, settings_class, env: dict[str, str], clock: ManualClock):
    settings = load(settings_class, env)
    await migrate(settings.database_url.get(), module.SCHEMA, module.MIGRATIONS)
    runtime = await module.bootstrap(settings, clock=clock)
    await runtime.start()
    return runtime, settings


async def campaigns(
    service_env: dict[str, str], tmp_path: Path, *, allow_real: bool
) -> AsyncIterator[Callable[..., Awaitable[Campaign]]]:
    """The body of a ``start_campaign`` fixture: ``campaign = await start_campaign(**env)`` starts
    campaign with the real profile and segment (``real=True``, when allowed) or alone, all on one
    ManualClock at START; everything stops when the fixture ends."""
    runtimes, connections, channels = [], [], []

    def channel_to(port: int) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return channel

    async def start(*, real: bool = allow_real, **extra_env) -> Campaign:
        assert allow_real or not real, "a component's own tests run campaign alone (tests/integration: with others)"
        clock = ManualClock(START)
        profile = segment = None
        targets = {"CDP_CAMPAIGN_PROFILE_TARGET": NOWHERE, "CDP_CAMPAIGN_SEGMENT_TARGET": NOWHERE}
        if real:
            from cdp_profile import __main__ as profile_main
            from cdp_segment import __main__ as segment_main

            profile, _ = await _start(
                profile_main,
                profile_main.Settings,
                {
                    **service_env,
                    "CDP_PROFILE_GRPC_PORT": "0",
                    "CDP_PROFILE_METRICS_PORT": "0",
                    "CDP_PROFILE_TIMER_INTERVAL_SECONDS": "0.2",
                },
                clock,
            )
            runtimes.append(profile)
            segment, _ = await _start(
                segment_main,
                segment_main.Settings,
                {
                    **service_env,
                    "CDP_SEGMENT_GRPC_PORT": "0",
                    "CDP_SEGMENT_METRICS_PORT": "0",
                    "CDP_SEGMENT_TIMER_POLL_SECONDS": "0.2",
                    "CDP_SEGMENT_RFM_INTERVAL_SECONDS": "0",
                    "CDP_SEGMENT_CROSSSELL_INTERVAL_SECONDS": "0",  # companions recounted at every request
                },
                clock,
            )
            runtimes.append(segment)
            targets = {
                "CDP_CAMPAIGN_PROFILE_TARGET": f"127.0.0.1:{profile.grpc_port}",
                "CDP_CAMPAIGN_SEGMENT_TARGET": f"127.0.0.1:{segment.grpc_port}",
            }
        env = {
            **service_env,
            **targets,
            "CDP_CAMPAIGN_GRPC_PORT": "0",
            "CDP_CAMPAIGN_METRICS_PORT": "0",
            "CDP_CAMPAIGN_SINK_PATH": str(tmp_path / "sink.jsonl"),
            "CDP_CAMPAIGN_POLL_SECONDS": "0.1",
            "CDP_CAMPAIGN_JOURNEY_CACHE_SECONDS": "0",
            "CDP_CAMPAIGN_TIME_ZONE_CACHE_SECONDS": "0",
            "CDP_CAMPAIGN_CROSS_SELL_CACHE_SECONDS": "0",
            "CDP_CAMPAIGN_RETRY_BACKOFF_SECONDS": "60,120",
            "CDP_CAMPAIGN_MAX_ATTEMPTS": "3",
            **extra_env,
        }
        runtime, settings = await _start(campaign_main, campaign_main.Settings, env, clock)
        runtimes.append(runtime)
        nc = await nats.connect(settings.nats_url)
        connections.append(nc)
        return Campaign(
            runtime,
            campaign_pb2_grpc.JourneyServiceStub(channel_to(runtime.grpc_port)),
            clock,
            BusNames(settings.bus_prefix, settings.partitions),
            nc.jetstream(),
            profile_pb2_grpc.ProfileServiceStub(channel_to(profile.grpc_port)) if profile else None,
            segment_pb2_grpc.SegmentServiceStub(channel_to(segment.grpc_port)) if segment else None,
        )

    try:
        yield start
    finally:
        for channel in channels:
            await channel.close()
        for nc in connections:
            await nc.close()
        # Stopped together: each waits out its consumers' fetch timeout (1 s).
        await asyncio.gather(*(runtime.stop() for runtime in reversed(runtimes)))
