"""cdpkit.bus naming and partitioning (no server needed)."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType

from cdpkit import bus
from cdpkit.bus import CATALOG, DLQ, IDENTITY, RAW, BusNames, partition_of


def test_partition_of_is_stable_and_independent_of_the_process():
    # Pinned: a person must land on the same partition after a restart or on another replica.
    expected = int.from_bytes(hashlib.blake2b(b"person-42", digest_size=8).digest(), "big") % 8
    assert partition_of("person-42", 8) == expected
    assert all(partition_of("person-42", 8) == expected for _ in range(10))


@pytest.mark.parametrize("partitions", [1, 2, 4, 7, 1024])
def test_partition_of_is_in_range(partitions):
    seen = {partition_of(f"key-{i}", partitions) for i in range(2000)}
    assert seen <= set(range(partitions))
    if partitions <= 7:
        assert seen == set(range(partitions))  # every partition gets keys


def test_partition_of_spreads_keys_evenly():
    counts = Counter(partition_of(f"anon-{i}", 4) for i in range(8000))
    assert all(1700 < n < 2300 for n in counts.values())


def test_streams_and_subjects_derive_from_the_prefix():
    names = BusNames("cdp-staging", 4)
    assert names.stream(RAW) == "CDP_STAGING_RAW"
    assert names.subject(RAW, 3) == "cdp-staging.raw.3"
    assert names.subject(IDENTITY, "person_created") == "cdp-staging.identity.person_created"
    assert names.all_subjects(RAW) == "cdp-staging.raw.>"
    assert names.dlq_subject("profile-applier") == "cdp-staging.dlq.profile-applier"
    assert names.stream(DLQ) == "CDP_STAGING_DLQ"


def test_partitioned_subject_uses_partition_of():
    names = BusNames("cdp", 16)
    assert names.partitioned(RAW, "anon-1") == f"cdp.raw.{partition_of('anon-1', 16)}"


def test_two_prefixes_never_share_a_stream_or_subject():
    a, b = BusNames("cdp"), BusNames("cdp2")
    for spec in CATALOG:
        assert a.stream(spec) != b.stream(spec)
        assert not b.subject(spec, 0).startswith(a.all_subjects(spec)[:-1])


def test_catalog_stream_names_and_subject_tokens_are_unique():
    assert len({s.suffix for s in CATALOG}) == len(CATALOG)
    assert len({s.subject_token for s in CATALOG}) == len(CATALOG)


def test_stream_config_carries_the_spec_limits():
    config = BusNames("cdp").stream_config(
        bus.StreamSpec("X", "x", max_age_seconds=60, duplicate_window_seconds=30, max_msg_size=1024)
    )
    assert config.name == "CDP_X"
    assert config.subjects == ["cdp.x.>"]
    assert config.retention == RetentionPolicy.LIMITS and config.storage == StorageType.FILE
    assert config.discard == DiscardPolicy.OLD
    assert (config.max_age, config.duplicate_window, config.max_msg_size) == (60, 30, 1024)
