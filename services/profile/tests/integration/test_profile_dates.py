"""ListProfileDates (campaign's backfill of date triggers) over gRPC: profiles with a birthday or
points expiring, by person id, in pages; a bad page token is INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import nats
import pytest

from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile import __main__ as profile_main
from cdpkit.bus import RESOLVED, BusNames

from .helpers import WS, resolved


async def test_profiles_with_dates_in_pages_by_person_id(run_service, service_env, nats_url):
    runtime = await run_service(profile_main, profile_main.Settings)
    born = sorted(str(uuid.uuid4()) for _ in range(3))
    without = str(uuid.uuid4())
    nc = await nats.connect(nats_url)
    try:
        js, names = nc.jetstream(), BusNames(service_env["CDP_BUS_PREFIX"])
        for n, person in enumerate([*born, without]):
            traits = {"birthday": f"1990-0{n + 1}-15"} if person in born else {"first_name": "Nobody"}
            event = resolved(person, f"id-{person}", 1, name="", type_=events_pb2.EVENT_TYPE_IDENTIFY, traits=traits)
            batch = events_pb2.ResolvedEventBatch(events=[event])
            await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)

            async def pages(size: int) -> list[list[tuple[str, str, int]]]:
                out, token = [], ""
                while True:
                    page = await stub.ListProfileDates(
                        profile_pb2.ListProfileDatesRequest(parent=f"workspaces/{WS}", page_size=size, page_token=token)
                    )
                    out.append([(p.person_id, p.birthday_month_day, p.version) for p in page.profiles])
                    token = page.next_page_token
                    if not token:
                        return out

            for _ in range(200):
                found = await pages(2)
                if sum(len(p) for p in found) == 3:
                    break
                await asyncio.sleep(0.05)
            assert [[(p, day) for p, day, _ in page] for page in found] == [
                [(born[0], "01-15"), (born[1], "02-15")],
                [(born[2], "03-15")],
            ]
            assert all(version >= 1 for page in found for _, _, version in page)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.ListProfileDates(
                    profile_pb2.ListProfileDatesRequest(parent=f"workspaces/{WS}", page_token="not-a-token")
                )
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await nc.close()
