from datetime import UTC, datetime, timedelta

from cdpkit.clock import OffsetFileClock, SystemClock, clock_from_settings


def test_offset_file_clock_moves_every_reader_of_the_file(tmp_path):
    path = tmp_path / "clock"
    writer, reader = OffsetFileClock(path), OffsetFileClock(path)
    assert abs(reader.now() - datetime.now(UTC)) < timedelta(seconds=1)  # no file: no offset
    writer.advance(timedelta(days=90))
    assert timedelta(days=90) - timedelta(seconds=1) < reader.now() - datetime.now(UTC) < timedelta(days=90, seconds=1)
    writer.advance(timedelta(hours=1))
    assert reader.offset() == timedelta(days=90, hours=1)


def test_no_offset_file_means_the_system_clock():
    assert isinstance(clock_from_settings(""), SystemClock)
    assert isinstance(clock_from_settings("/tmp/x"), OffsetFileClock)
