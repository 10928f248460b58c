"""What the Kubernetes probes see: readiness follows the dependencies, liveness the process."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from cdpkit.healthcheck import check
from cdpkit.runtime import ServiceRuntime
from cdpkit.server import LIVENESS, create_server


async def test_liveness_stays_serving_while_readiness_follows_the_dependencies():
    dependencies_up = False

    async def readiness() -> bool:
        return dependencies_up

    async def close() -> None:
        return None

    runtime = ServiceRuntime(
        name="probe-test",
        server=create_server([]),
        grpc_address="127.0.0.1:0",
        readiness=readiness,
        close=close,
        readiness_interval=0.1,
    )
    await runtime.start()
    try:
        port = runtime.grpc_port
        # Database or NATS down: not ready (no traffic), but alive (no restart).
        assert not await asyncio.to_thread(check, port)
        assert await asyncio.to_thread(check, port, LIVENESS)
        dependencies_up = True
        for _ in range(50):
            if await asyncio.to_thread(check, port):
                break
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(check, port)
        # The command compose healthchecks run.
        probe = [sys.executable, "-m", "cdpkit.healthcheck", str(port)]
        assert (await asyncio.to_thread(subprocess.run, probe, check=False)).returncode == 0
        dependencies_up = False
        await asyncio.sleep(0.4)
        assert (await asyncio.to_thread(subprocess.run, probe, check=False)).returncode == 1
        assert (await asyncio.to_thread(subprocess.run, [*probe, LIVENESS], check=False)).returncode == 0
    finally:
        await runtime.stop()
    assert not await asyncio.to_thread(check, port, LIVENESS)
