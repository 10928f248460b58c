"""Time in the identity service comes from its clock (CDP_CLOCK_OFFSET_FILE moves it in tests)."""

from __future__ import annotations

from datetime import timedelta

from cdp.identity.v1 import identity_pb2
from cdp_identity.workers import Maintenance
from cdpkit.clock import OffsetFileClock

WS = "shop"


async def test_windowed_limits_journal_and_conflict_retention_follow_the_service_clock(start_identity, tmp_path):
    offset = tmp_path / "offset"
    clock = OffsetFileClock(offset)
    h = await start_identity(
        CDP_CLOCK_OFFSET_FILE=str(offset), CDP_IDENTITY_JOURNAL_DAYS="7", CDP_IDENTITY_CONFLICT_DAYS="30"
    )
    await h.start_listening()
    await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(
            rules=identity_pb2.IdentityRules(
                name=f"workspaces/{WS}/identityRules",
                identifier_types=[identity_pb2.IdentifierTypeRule(name="device_id", max_per_person=2, window_days=30)],
            ),
            update_mask={"paths": ["identifier_types"]},
        )
    )
    (first,) = await h.resolve(
        [("user_id", "u1"), ("phone", "13912345678"), ("device_id", "d1"), ("device_id", "d2")], message_ids=["w1"]
    )
    (third,) = await h.resolve([("user_id", "u1"), ("device_id", "d3")], message_ids=["w2"])
    assert [c.kind for c in third.conflicts] == ["limit"]
    # Another account's every event carries u1's phone: one conflict, not one per event.
    for n in range(1, 4):
        (other,) = await h.resolve([("user_id", "u2"), ("phone", "13912345678")], message_ids=[f"k{n}"])
        assert [(c.kind, c.other_person_id) for c in other.conflicts] == [("limit", first.person_id)]
    rows = await h.sql("SELECT message_id FROM identity.conflicts ORDER BY created_at")
    assert [r["message_id"] for r in rows] == ["w2", "k1"]
    assert [c.trigger_message_id for c in await h.announcements("conflict", 2)] == ["w2", "k1"]

    clock.advance(timedelta(days=31))  # d1 and d2 were linked more than 30 days ago by the service's clock
    (later,) = await h.resolve([("user_id", "u1"), ("device_id", "d3")], message_ids=["w3"])
    assert later.person_id == first.person_id and not later.conflicts
    rows = await h.sql("SELECT id_value, first_seen_at FROM identity.identifiers WHERE id_type = 'device_id'")
    seen = {r["id_value"]: r["first_seen_at"] for r in rows}
    assert seen["d3"] - seen["d1"] >= timedelta(days=31)

    # The journal (7 days) and the conflicts (30 days) are pruned by the same clock ...
    (maintenance,) = [w for w in h.runtime.workers if isinstance(w, Maintenance)]
    await maintenance.run_once()
    assert [r["message_id"] for r in await h.sql("SELECT message_id FROM identity.journal")] == ["w3"]
    assert not await h.sql("SELECT 1 FROM identity.conflicts")
    # ... and a conflict still happening after that is recorded and announced again.
    await h.resolve([("user_id", "u2"), ("phone", "13912345678")], message_ids=["k4"])
    (again,) = await h.announcements("conflict", 1)
    assert again.trigger_message_id == "k4"
