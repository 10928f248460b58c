from datetime import UTC, datetime, timedelta

from cdp_profile.domain import NewEvent, ProfileState, apply_events

T0 = datetime(2026, 6, 18, 12, 0, tzinfo=UTC)


def ev(message_id, minutes, traits=None, type_="track"):
    return NewEvent(message_id, "p1", type_, "Viewed", T0 + timedelta(minutes=minutes), traits or {})


def test_first_events_create_counters_and_seen_times():
    change = apply_events(ProfileState("p1"), [ev("b", 5), ev("a", 1)])
    assert change.state.event_count == 2
    assert change.state.first_seen_at == T0 + timedelta(minutes=1)
    assert change.state.last_seen_at == T0 + timedelta(minutes=5)
    assert change.state.version == 1
    assert change.trigger.message_id == "b"
    assert set(change.changed) == {"event_count", "first_seen_time", "last_seen_time"}


def test_older_event_does_not_move_last_seen_back():
    current = ProfileState("p1", event_count=3, first_seen_at=T0, last_seen_at=T0 + timedelta(hours=1), version=4)
    change = apply_events(current, [ev("late", 30)])
    assert change.state.last_seen_at == T0 + timedelta(hours=1)
    assert change.state.event_count == 4
    assert change.state.version == 5
    assert "last_seen_time" not in change.changed and "first_seen_time" not in change.changed


def test_traits_merge_in_event_time_order_and_report_only_changes():
    current = ProfileState(
        "p1", traits={"tier": "gold", "city": "Hangzhou"}, event_count=1, first_seen_at=T0, last_seen_at=T0
    )
    change = apply_events(
        current,
        [ev("2", 2, {"city": "Shanghai"}, "identify"), ev("1", 1, {"city": "Beijing", "tier": "gold"}, "identify")],
    )
    assert change.state.traits == {"tier": "gold", "city": "Shanghai"}
    assert change.changed["traits.city"] == "Shanghai"
    assert "traits.tier" not in change.changed


def test_no_events_no_change():
    assert apply_events(ProfileState("p1"), []) is None
