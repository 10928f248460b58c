"""Concurrent resolution with traits, weak ids and the suggester running: no deadlock, one person."""

from __future__ import annotations

import asyncio
import random

import pytest

from cdp_identity import __main__ as identity_main
from cdp_identity.matching import Attributes
from cdp_identity.rules import Guardrails, Identifier, TypePatch
from cdp_identity.service import IdentityService, ResolveItem
from cdpkit import db
from cdpkit.bus import BusNames
from cdpkit.config import load
from cdpkit.migrate import migrate

WS = "shop"


@pytest.fixture
async def service(service_env):
    settings = load(identity_main.Settings, service_env)
    await migrate(settings.database_url.get(), identity_main.SCHEMA, identity_main.MIGRATIONS)
    pool = await db.create_pool(settings.database_url.get(), identity_main.SCHEMA, application_name="test", max_size=12)
    yield IdentityService(pool, BusNames(service_env["CDP_BUS_PREFIX"]), settings.pii_vault())
    await pool.close()


async def test_resolves_with_traits_weak_ids_and_the_suggester_running_never_deadlock(service):
    await service.update_rules(
        WS,
        {
            "types": [
                TypePatch("external:card", priority=70, max_per_person=0),
                TypePatch("device_id", max_per_person=0),
            ],
            "guardrails": Guardrails(max_identifiers_per_person=10_000, max_merges_per_person=10_000),
        },
        etag="",
        comment="",
    )
    card = [Identifier("external:card", f"c{i}") for i in range(241)]
    family = ["li", "wang", "zhang"]

    def traits(i: int) -> Attributes:
        # Neighbours look alike (same family name and birth date): the suggester files them together.
        return Attributes(given_name=f"n{i % 7}", family_name=family[i % 3], birth_date=f"199{i % 4}0102")

    # A chain of overlapping pairs (merges), with shared devices (weak ids) and traits; single
    # known cards with traits (the lock-free path); batches of 4 like the consumer's.
    items = [
        ResolveItem(WS, (card[i], card[i + 1], Identifier("device_id", f"d{i % 6}")), f"m{i}", traits(i))
        for i in range(240)
    ]
    items += [ResolveItem(WS, (card[i],), f"f{i}", traits(i + 1)) for i in range(0, 240, 3)]
    random.Random(7).shuffle(items)
    batches = [items[n : n + 4] for n in range(0, len(items), 4)]
    done = asyncio.Event()

    async def suggester() -> int:
        rounds = 0
        while not done.is_set():
            await service.suggest(batch=50)
            rounds += 1
            await asyncio.sleep(0)
        return rounds

    running = asyncio.create_task(suggester())
    try:
        await asyncio.gather(*(service.resolve(batch) for batch in batches))
    finally:
        done.set()
        rounds = await running
    assert rounds > 1
    outcomes = await service.resolve([ResolveItem(WS, (c,)) for c in card])
    assert len({o.person_id for o in outcomes}) == 1
