"""The profile's use cases called directly against real PostgreSQL (no gRPC, no NATS round trip):
for the races, poison inputs and ownership rules that are easiest to pin down one call at a time."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from cdp_profile import __main__ as profile_main
from cdp_profile.service import ProfileService
from cdpkit.bus import BusNames
from cdpkit.clock import ManualClock
from cdpkit.config import load
from cdpkit.db import create_pool
from cdpkit.migrate import migrate

from .helpers import T0


@pytest.fixture
async def svc(service_env):
    """A ProfileService on a migrated database and a manual clock (``svc.clock``, ``svc.pool``)."""
    settings = load(profile_main.Settings, service_env)
    dsn = settings.database_url.get()
    await migrate(dsn, profile_main.SCHEMA, profile_main.MIGRATIONS)
    pool = await create_pool(dsn, profile_main.SCHEMA, application_name="test", json_decoder=orjson.loads)
    clock = ManualClock(T0 + timedelta(hours=1))
    service = ProfileService(pool, BusNames(service_env["CDP_BUS_PREFIX"]), settings.pii_vault(), clock)
    service.clock, service.pool = clock, pool
    try:
        yield service
    finally:
        await pool.close()
