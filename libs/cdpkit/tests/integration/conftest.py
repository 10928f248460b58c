"""Shared fixtures of the kit's integration tests: a NATS connection in this test's namespace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from cdpkit import bus


@pytest.fixture
async def nc(nats_url):
    connection = await bus.connect(nats_url, name="cdpkit-tests")
    yield connection
    if not connection.is_closed:
        await connection.close()


@pytest.fixture
def js(nc):
    return nc.jetstream()


@pytest.fixture
def names(bus_prefix):
    return bus.BusNames(bus_prefix, 4)


async def _eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0, interval: float = 0.02
) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@pytest.fixture
def eventually():
    """``await eventually(check, timeout)``: poll until ``check()`` (sync or async) is true."""
    return _eventually
