"""Settings and specs behind scaling out: partitioned consumers, lease TTL, stream replicas."""

from __future__ import annotations

import pytest

from cdpkit.bus import DLQ, IDENTITY, PROFILE, RAW, RESOLVED, BusNames
from cdpkit.config import CommonSettings, ConfigError, load
from cdpkit.consumer import ConsumerSpec

BASE = {"CDP_DATABASE_URL": "postgresql://cdp@db/cdp"}


def test_consumers_of_partitioned_streams_become_partitioned_with_the_operators_lease():
    settings = load(CommonSettings, {**BASE, "CDP_CONSUMER_LEASE_SECONDS": "4"})
    for stream in (RAW, RESOLVED, PROFILE):
        spec = ConsumerSpec(durable="x", stream=stream).tuned(settings)
        assert spec.partitioned and spec.lease_seconds == 4.0
    # Kind-named subjects (identity.person_created) are not partitions; nor is an explicit filter.
    assert not ConsumerSpec(durable="x", stream=IDENTITY).tuned(settings).partitioned
    assert not ConsumerSpec(durable="x", stream=DLQ).tuned(settings).partitioned
    assert not ConsumerSpec(durable="x", stream=RAW, filter_subject="cdp.raw.1").tuned(settings).partitioned


def test_streams_are_replicated_as_configured():
    assert BusNames("cdp", 4).stream_config(RAW).num_replicas == 1
    assert BusNames("cdp", 4, 3).stream_config(PROFILE).num_replicas == 3
    assert load(CommonSettings, {**BASE, "CDP_STREAM_REPLICAS": "3"}).stream_replicas == 3


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CDP_STREAM_REPLICAS", "2"), ("CDP_CONSUMER_LEASE_SECONDS", "0.5"), ("CDP_CONSUMER_LEASE_SECONDS", "301")],
)
def test_bad_scaling_settings_are_refused(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load(CommonSettings, {**BASE, variable: value})
