"""Clocks. Domain code asks a clock for the time so tests can move time by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, simulations in one process)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment


class OffsetFileClock:
    """System time plus an offset in seconds read from a file at every call.

    End-to-end tests move time for several processes at once by rewriting the file
    (``CDP_CLOCK_OFFSET_FILE``); a missing or empty file means no offset. Never set in production.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    def offset(self) -> timedelta:
        try:
            text = self._path.read_text().strip()
        except FileNotFoundError:
            return timedelta(0)
        return timedelta(seconds=float(text)) if text else timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset()

    def advance(self, delta: timedelta) -> datetime:
        """Move every process reading this file forward by ``delta`` (tests)."""
        moved = self.offset() + delta
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(str(moved.total_seconds()))
        tmp.replace(self._path)  # atomic: a reader never sees half a number
        return datetime.now(UTC) + moved


def clock_from_settings(offset_file: str) -> Clock:
    return OffsetFileClock(offset_file) if offset_file else SystemClock()
