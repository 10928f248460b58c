"""cdpkit.bus against a real JetStream: stream creation and configuration updates."""

from __future__ import annotations

import pytest

from cdpkit import bus
from cdpkit.bus import CATALOG, DLQ, RAW, StreamSpec, ensure_streams


async def stream_names(js, names) -> set[str]:
    return {info.config.name for info in await js.streams_info() if info.config.name.startswith(names.stream(RAW)[:-3])}


async def test_ensure_streams_creates_the_whole_catalogue(js, names):
    await ensure_streams(js, names)
    assert await stream_names(js, names) == {names.stream(spec) for spec in CATALOG}
    info = await js.stream_info(names.stream(RAW))
    assert info.config.subjects == [names.all_subjects(RAW)]
    assert info.config.max_age == RAW.max_age_seconds
    assert info.config.duplicate_window == RAW.duplicate_window_seconds


async def test_ensure_streams_twice_is_harmless_and_keeps_messages(js, names):
    await ensure_streams(js, names, (RAW, DLQ))
    await js.publish(names.subject(RAW, 0), b"kept")
    await ensure_streams(js, names, (RAW, DLQ))
    assert await stream_names(js, names) == {names.stream(RAW), names.stream(DLQ)}
    assert (await js.stream_info(names.stream(RAW))).state.messages == 1


async def test_ensure_streams_updates_a_changed_config(js, names):
    await ensure_streams(js, names, (RAW,))
    await js.publish(names.subject(RAW, 1), b"kept")
    shorter = StreamSpec("RAW", "raw", max_age_seconds=3600, duplicate_window_seconds=60, max_msg_size=1024 * 1024)
    await ensure_streams(js, names, (shorter,))
    info = await js.stream_info(names.stream(RAW))
    assert info.config.max_age == 3600
    assert info.config.duplicate_window == 60
    assert info.config.max_msg_size == 1024 * 1024
    assert info.state.messages == 1  # updated in place, not recreated


async def test_published_subjects_land_in_their_stream(js, names):
    await ensure_streams(js, names, (RAW, bus.IDENTITY))
    ack = await js.publish(names.partitioned(RAW, "anon-1"), b"x")
    assert ack.stream == names.stream(RAW)
    ack = await js.publish(names.subject(bus.IDENTITY, "person_created"), b"y")
    assert ack.stream == names.stream(bus.IDENTITY)


async def test_streams_of_two_prefixes_do_not_capture_each_other(js, names, bus_prefix):
    other = bus.BusNames(bus_prefix + "x", 4)
    await ensure_streams(js, names, (RAW,))
    await ensure_streams(js, other, (RAW,))
    try:
        await js.publish(names.subject(RAW, 0), b"mine")
        assert (await js.stream_info(other.stream(RAW))).state.messages == 0
        assert (await js.stream_info(names.stream(RAW))).state.messages == 1
    finally:
        await js.delete_stream(other.stream(RAW))  # outside this test's namespace: not cleaned up for us


async def test_duplicate_msg_id_is_dropped_within_the_window(js, names):
    await ensure_streams(js, names, (RAW,))
    first = await js.publish(names.subject(RAW, 0), b"a", headers={"Nats-Msg-Id": "m-1"})
    again = await js.publish(names.subject(RAW, 0), b"a", headers={"Nats-Msg-Id": "m-1"})
    assert not first.duplicate and again.duplicate
    assert (await js.stream_info(names.stream(RAW))).state.messages == 1


@pytest.mark.parametrize("url", ["{url}", " {url} , {url} "])
async def test_connect_accepts_comma_separated_servers(nats_url, url):
    nc = await bus.connect(url.format(url=nats_url), name="t")
    try:
        assert nc.is_connected
    finally:
        await nc.close()
