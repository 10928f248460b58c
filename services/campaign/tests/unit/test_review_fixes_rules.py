"""Time rules around DST changes, the uplift interval at 0%, steps on loops (pure)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from cdp_campaign import definition as defs
from cdp_campaign import reports
from cdp_campaign.delivery import retry_delay
from cdp_campaign.domain import next_local_time, quiet_until
from cdp_campaign.providers import MAX_RETRY_AFTER, retry_after
from cdpkit.errors import InvalidArgument

NEW_YORK = ZoneInfo("America/New_York")


def test_quiet_hours_and_local_times_in_the_repeated_hour_are_in_the_future():
    # 2026-11-01 01:15 EST (the second 01:15, 06:15Z): quiet 21:00-01:30 ends at 01:30 EST,
    # 06:30Z, not at the first 01:30 (EDT, 05:30Z), which is already past (a hot loop).
    now = datetime(2026, 11, 1, 6, 15, tzinfo=UTC)
    assert quiet_until(now, NEW_YORK, "21:00", "01:30") == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert next_local_time(now, time(1, 30), NEW_YORK) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    # In the first pass (01:15 EDT, 05:15Z) the first 01:30 comes next.
    first = datetime(2026, 11, 1, 5, 15, tzinfo=UTC)
    assert next_local_time(first, time(1, 30), NEW_YORK) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    # After both: the next day.
    later = datetime(2026, 11, 1, 6, 45, tzinfo=UTC)
    assert next_local_time(later, time(1, 30), NEW_YORK) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    # The skipped hour in spring: 02:30 does not exist on 2026-03-08; it is 03:30 EDT (07:30Z).
    spring = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST
    assert next_local_time(spring, time(2, 30), NEW_YORK) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    for moment in (now, first, later, spring):
        assert next_local_time(moment, time(1, 30), NEW_YORK) > moment


def test_no_conversions_in_either_group_is_no_certainty_of_no_effect():
    # 0/50 vs 0/50: the Wald interval was [0, 0]. Each group's Wilson interval is
    # [0, z²/(n + z²)] = [0, 3.8415/53.8415] = [0, 0.071347], so the difference is +/-0.071347.
    result = reports.uplift("a", "control", 0, 50, 0, 50)
    assert result.uplift == 0
    assert math.isclose(result.ci_low, -0.071347, abs_tol=1e-6) and math.isclose(result.ci_high, 0.071347, abs_tol=1e-6)
    everyone = reports.uplift("a", "control", 50, 50, 50, 50)  # and 100%
    assert math.isclose(everyone.ci_low, -0.071347, abs_tol=1e-6) and math.isclose(
        everyone.ci_high, 0.071347, abs_tol=1e-6
    )


@pytest.mark.parametrize(
    "looped",
    [
        {"id": "m", "send": {"channel": "email", "template": {"subject": "s", "body": "b"}}},
        {"id": "m", "webhook": {"url": "https://hooks.example.com/x", "body": "{}"}},
        {"id": "m", "tag": {"add": ["x"]}},
    ],
)
def test_a_step_that_acts_once_per_instance_cannot_be_on_a_loop(looped):
    document = {
        "trigger": {"event": {"name": "X"}},
        "steps": [
            looped,
            {"id": "w", "wait": {"duration": "1d"}},
            {"id": "b", "next": "m", "wait": {"duration": "1h"}},
        ],
    }
    with pytest.raises(InvalidArgument) as error:
        defs.check(defs.parse(document), tz=NEW_YORK)
    assert error.value.field == "journey.definition.steps" and "'m' is on a loop" in str(error.value)
    # The same steps without the way back publish.
    document["steps"][2].pop("next")
    defs.check(defs.parse(document), tz=NEW_YORK)


def test_retries_are_jittered_within_the_backoff_step_and_follow_retry_after():
    delays = {retry_delay((5.0, 30.0), 2, None) for _ in range(200)}
    assert all(15.0 <= d <= 30.0 for d in delays) and len(delays) > 100  # spread, never past the step
    assert all(120.0 <= retry_delay((5.0,), 1, 120.0) <= 132.0 for _ in range(50))


def test_retry_after_in_seconds_or_as_an_http_date():
    now = datetime(2026, 6, 18, 2, 0, tzinfo=UTC)
    assert retry_after("120") == 120.0 and retry_after(" ") is None and retry_after("soon") is None
    assert retry_after("Thu, 18 Jun 2026 02:05:00 GMT", now) == 300.0
    assert retry_after("Thu, 18 Jun 2026 01:00:00 GMT", now) == 0.0  # already past: at once
    assert retry_after("999999999") == MAX_RETRY_AFTER
