"""Dry runs of proposed rules over the journal: honest about time, windows and what they cover."""

from __future__ import annotations

from datetime import timedelta

from cdp.identity.v1 import identity_pb2
from cdpkit.clock import OffsetFileClock

WS = "shop"
RULES = f"workspaces/{WS}/identityRules"


def types(*rules: identity_pb2.IdentifierTypeRule) -> identity_pb2.IdentityRules:
    return identity_pb2.IdentityRules(name=RULES, identifier_types=list(rules))


async def dry_run(h, rules: identity_pb2.IdentityRules, **kwargs) -> identity_pb2.DryRunIdentityRulesResponse:
    return await h.stub.DryRunIdentityRules(
        identity_pb2.DryRunIdentityRulesRequest(
            name=RULES, rules=rules, update_mask={"paths": ["identifier_types"]}, **kwargs
        )
    )


async def test_a_dry_run_replays_each_resolution_at_its_time_and_says_what_it_covers(start_identity, tmp_path):
    """... and previews unblocking, and ignores a mere change of anchor (second part)."""
    offset = tmp_path / "offset"
    clock = OffsetFileClock(offset)
    h = await start_identity(CDP_CLOCK_OFFSET_FILE=str(offset), CDP_IDENTITY_JOURNAL_DAYS="60")
    await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(
            rules=types(identity_pb2.IdentifierTypeRule(name="device_id", max_per_person=2)),
            update_mask={"paths": ["identifier_types"]},
        )
    )
    await h.resolve([("user_id", "u1"), ("device_id", "d1"), ("device_id", "d2")], message_ids=["w1"])
    clock.advance(timedelta(days=31))
    (third,) = await h.resolve([("user_id", "u1"), ("device_id", "d3")], message_ids=["w2"])
    assert [c.kind for c in third.conflicts] == ["limit"]

    # Counted over 30 days, the two old devices no longer count when d3 comes, 31 days later.
    windowed = types(identity_pb2.IdentifierTypeRule(name="device_id", max_per_person=2, window_days=30))
    report = await dry_run(h, windowed, days=40)
    assert report.events_replayed == 2 and not report.truncated and report.days_replayed == 40
    assert (report.current_conflicts, report.proposed_conflicts) == (1, 0)
    assert report.oldest_event_time.ToDatetime() < (clock.now() - timedelta(days=30)).replace(tzinfo=None)

    # The journal keeps 60 days: a 90-day dry run says so.
    report = await dry_run(h, windowed, days=90)
    assert report.truncated and report.days_replayed == 60 and report.events_replayed == 2
    assert "CDP_IDENTITY_JOURNAL_DAYS" in report.truncation_reason
    report = await dry_run(h, windowed, days=40, max_events=1)
    assert report.truncated and report.events_replayed == 1 and "the oldest 1 replayed" in report.truncation_reason

    await _previews_unblocking_and_ignores_a_mere_change_of_anchor(h)


async def _previews_unblocking_and_ignores_a_mere_change_of_anchor(h) -> None:
    guest = identity_pb2.IdentifierTypeRule(name="user_id", blocked=identity_pb2.BlockedValues(exact=["guest"]))
    await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(rules=types(guest), update_mask={"paths": ["identifier_types"]})
    )
    # Through the consumer path values are refused one by one (the API refuses the whole set):
    # "guest" was blocked, so the journal keeps it sealed among the refused values.
    await h.start_listening()
    await h.publish(
        h.raw("g1", traits={"email": "a@x.io"}),
        h.raw("g2", traits={"email": "b@x.io"}),
        h.raw("g3", user_id="guest", traits={"email": "a@x.io"}),
        h.raw("g4", user_id="guest", traits={"email": "b@x.io"}),
    )
    assert len({r.person_id for r in await h.resolved(4)}) == 2
    unblocked = types(identity_pb2.IdentifierTypeRule(name="user_id", blocked=identity_pb2.BlockedValues()))
    report = await dry_run(h, unblocked, days=1)  # (w1, w2 are 31 days old)
    assert (report.current_merges, report.proposed_merges) == (0, 1)
    (difference,) = report.differences
    assert difference.side == identity_pb2.MergeDifference.SIDE_PROPOSED_ONLY and difference.trigger_message_id == "g4"

    # A merge under both rule sets that only picks other anchor and bridge identifiers (the
    # jd_pin now walks first) is no difference.
    for message_id, pair in (("g5", ("phone", "13912345678")), ("g6", ("jd_pin", "j1")), ("g7", ("email", "c@x.io"))):
        await h.resolve([pair], message_ids=[message_id])
    (merged,) = await h.resolve([("phone", "13912345678"), ("jd_pin", "j1"), ("email", "c@x.io")], message_ids=["g8"])
    assert len(merged.merged_person_ids) == 2
    jd_first = types(identity_pb2.IdentifierTypeRule(name="jd_pin", priority=100))
    report = await dry_run(h, jd_first, days=1)
    assert (report.current_merges, report.proposed_merges) == (2, 2) and not report.differences
