"""EventPublisher: chunking by partition, deterministic chunk ids, publish outcome."""

from __future__ import annotations

import pytest

from cdp.events.v1 import events_pb2
from cdp_gateway.collection import partition_key
from cdp_gateway.publisher import EventPublisher, chunk_id, encode_batch
from cdpkit.bus import RAW, BusNames, partition_of
from cdpkit.errors import Unavailable

NAMES = BusNames("cdp", partitions=4)


def event(visitor: str, message_id: str, *, workspace: str = "shop", user: str = "") -> events_pb2.RawEvent:
    return events_pb2.RawEvent(workspace_id=workspace, anonymous_id=visitor, user_id=user, message_id=message_id)


def publisher(chunk_size: int = 100, names: BusNames = NAMES) -> EventPublisher:
    return EventPublisher(None, names, chunk_size=chunk_size)  # type: ignore[arg-type]


def visitors_in_distinct_partitions(count: int) -> list[str]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < count:
        found.setdefault(partition_of(f"shop/v{i}", NAMES.partitions), f"v{i}")
        i += 1
    return list(found.values())


def test_no_events_no_chunks():
    assert publisher().chunks([]) == []


def test_chunks_group_by_partition_and_keep_order_within_a_partition():
    visitors = [f"v{i}" for i in range(12)]
    events = [event(visitors[i % 12], f"m{i}") for i in range(120)]
    chunks = publisher().chunks(events)
    seen_partitions = []
    collected = []
    for subject, _msg_id, batch in chunks:
        prefix, token, partition = subject.split(".")
        assert (prefix, token) == ("cdp", "raw")
        for e in batch.events:
            assert partition_of(partition_key(e), NAMES.partitions) == int(partition)
        seen_partitions.append(int(partition))
        collected.extend(batch.events)
    # Every event exactly once, partitions in ascending order, one chunk per partition here.
    assert sorted(e.message_id for e in collected) == sorted(e.message_id for e in events)
    assert seen_partitions == sorted(set(seen_partitions))
    for partition in set(seen_partitions):
        expected = [e.message_id for e in events if partition_of(partition_key(e), NAMES.partitions) == partition]
        got = [e.message_id for e in collected if partition_of(partition_key(e), NAMES.partitions) == partition]
        assert got == expected


def test_a_visitors_events_stay_together_in_order():
    events = [event("a1", f"m{i}") for i in range(5)]
    events.append(event("a1", "m5", user="u1"))  # after login: same key (anonymous id first)
    ((subject, _, batch),) = publisher().chunks(events)
    assert subject == NAMES.partitioned(RAW, "shop/a1")
    assert [e.message_id for e in batch.events] == [f"m{i}" for i in range(6)]


def test_chunk_size_is_respected():
    (visitor,) = visitors_in_distinct_partitions(1)
    events = [event(visitor, f"m{i}") for i in range(7)]
    chunks = publisher(chunk_size=3).chunks(events)
    assert [len(batch.events) for _, _, batch in chunks] == [3, 3, 1]
    assert [e.message_id for _, _, batch in chunks for e in batch.events] == [f"m{i}" for i in range(7)]
    assert len({subject for subject, _, _ in chunks}) == 1
    assert len({msg_id for _, msg_id, _ in chunks}) == 3


def test_chunk_size_per_partition():
    a, b = visitors_in_distinct_partitions(2)
    events = [event(a if i % 2 else b, f"m{i}") for i in range(10)]
    chunks = publisher(chunk_size=2).chunks(events)
    assert all(len(batch.events) <= 2 for _, _, batch in chunks)
    assert len(chunks) == 6  # 5 events per partition -> 2 + 2 + 1, twice
    for _, _, batch in chunks:
        assert len({e.anonymous_id for e in batch.events}) == 1


def test_chunk_ids_are_deterministic():
    events = [event(f"v{i % 5}", f"m{i}") for i in range(50)]
    first = publisher(chunk_size=4).chunks(events)
    again = publisher(chunk_size=4).chunks([events_pb2.RawEvent.FromString(e.SerializeToString()) for e in events])
    assert [(s, m) for s, m, _ in first] == [(s, m) for s, m, _ in again]
    assert len({m for _, m, _ in first}) == len(first)
    for _, msg_id, _ in first:
        assert len(msg_id) == 40
        int(msg_id, 16)


def test_chunk_ids_depend_only_on_workspace_and_message_ids():
    a = [event("v", "m1"), event("v", "m2")]
    assert chunk_id("shop", a) == chunk_id("shop", [event("other", "m1", user="u"), event("x", "m2")])
    assert chunk_id("shop", a) != chunk_id("shop2", a)
    assert chunk_id("shop", a) != chunk_id("shop", [event("v", "m1"), event("v", "m3")])
    assert chunk_id("shop", a) != chunk_id("shop", list(reversed(a)))
    assert chunk_id("shop", a) != chunk_id("shop", a[:1])
    # Message ids are separated: ("ab", "c") is not ("a", "bc").
    assert chunk_id("shop", [event("v", "ab"), event("v", "c")]) != chunk_id(
        "shop", [event("v", "a"), event("v", "bc")]
    )


def test_chunk_ids_differ_for_different_events():
    first = publisher().chunks([event("v", "m1"), event("v", "m2")])
    second = publisher().chunks([event("v", "m1"), event("v", "m3")])
    assert first[0][1] != second[0][1]
    other_workspace = publisher().chunks([event("v", "m1", workspace="shop2"), event("v", "m2", workspace="shop2")])
    assert {m for _, m, _ in other_workspace}.isdisjoint({m for _, m, _ in first})


def test_subjects_follow_the_bus_prefix():
    names = BusNames("test-1", partitions=2)
    chunks = publisher(names=names).chunks([event(f"v{i}", f"m{i}") for i in range(20)])
    assert {subject.rsplit(".", 1)[0] for subject, _, _ in chunks} == {"test-1.raw"}
    assert {int(subject.rsplit(".", 1)[1]) for subject, _, _ in chunks} <= {0, 1}


class FakeJetStream:
    def __init__(self, fail: Exception | None = None) -> None:
        self.published: list[tuple[str, bytes, float, dict]] = []
        self.fail = fail

    async def publish(self, subject, payload, *, timeout, headers):
        if self.fail:
            raise self.fail
        self.published.append((subject, payload, timeout, headers))


async def test_publish_sends_every_chunk_with_its_msg_id():
    js = FakeJetStream()
    p = EventPublisher(js, NAMES, chunk_size=2, timeout=1.5)  # type: ignore[arg-type]
    events = [event(f"v{i % 3}", f"m{i}") for i in range(9)]
    await p.publish(events)
    expected = p.chunks(events)
    assert len(js.published) == len(expected)
    for (subject, payload, timeout, headers), (e_subject, e_id, e_batch) in zip(js.published, expected, strict=True):
        assert subject == e_subject
        assert headers == {"Nats-Msg-Id": e_id}
        assert timeout == 1.5
        assert events_pb2.RawEventBatch.FromString(payload) == e_batch


async def test_publish_nothing_for_no_events():
    js = FakeJetStream(fail=RuntimeError("must not be called"))
    await EventPublisher(js, NAMES).publish([])  # type: ignore[arg-type]


async def test_publish_failure_is_unavailable():
    js = FakeJetStream(fail=TimeoutError("no ack"))
    with pytest.raises(Unavailable):
        await EventPublisher(js, NAMES).publish([event("v", "m")])  # type: ignore[arg-type]


def test_payloads_are_the_serialized_batches_of_chunks():
    events = [event(f"v{i % 7}", f"m{i}", user=f"u{i}") for i in range(230)]
    for e in events:
        e.properties.update({"sku": "A-1", "price": 1999, "tags": ["x", "y"]})
        e.timestamp.seconds = 1_700_000_000
    chunks = publisher(chunk_size=50).chunks(events)
    payloads = publisher(chunk_size=50).payloads(events)
    assert [(s, m) for s, m, _ in chunks] == [(s, m) for s, m, _ in payloads]
    for (_, _, batch), (_, _, payload) in zip(chunks, payloads, strict=True):
        assert events_pb2.RawEventBatch.FromString(payload) == batch
    big = events_pb2.RawEvent(message_id="big", properties={"blob": "x" * 70_000})  # multi-byte length
    assert events_pb2.RawEventBatch.FromString(encode_batch([big, big])).events[1] == big
