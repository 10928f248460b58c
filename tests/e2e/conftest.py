"""The whole suite as separate processes on real PostgreSQL, NATS and sockets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from cdp_devstack.infra import free_port
from cdp_devstack.stack import Ports, Stack


def free_ports() -> Ports:
    return Ports(
        postgres=free_port(),
        nats=free_port(),
        nats_monitor=free_port(),
        gateway_http=free_port(),
        gateway_grpc=free_port(),
        identity=free_port(),
        profile=free_port(),
        segment=free_port(),
        campaign=free_port(),
        metrics_base=0,
    )


class RunningStack:
    def __init__(self, stack: Stack, write_key: str, secret_key: str, log_path: Path) -> None:
        self.stack = stack
        self.write_key = write_key
        self.secret_key = secret_key
        self.log_path = log_path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.ports.gateway_http}"

    def writer(self) -> dict[str, str]:
        return {"Authorization": aiohttp.encode_basic_auth(self.write_key, "")}

    def reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Extra environment for every component of ``running_stack``; a test module overrides this
    fixture (e.g. campaign's providers, CDP_CLOCK_OFFSET_FILE)."""
    return {}


@pytest.fixture
async def running_stack(tmp_path, postgres_server_url, nats_url, bus_prefix, database_url, stack_env):
    """All five components on free ports, this test's database and NATS namespace."""
    log_path = tmp_path / "stack.log"
    log = open(log_path, "w")  # noqa: SIM115, ASYNC230 - the stack's log pumps write to it from threads
    ports = free_ports()
    stack = Stack(
        tmp_path / "state", ports, database_url=database_url, nats_url=nats_url, bus_prefix=bus_prefix, log=log
    )
    # Redeliver what a killed process had fetched after 3 s instead of 30 s.
    stack.extra_env = {"CDP_CONSUMER_ACK_WAIT_SECONDS": "3", **stack_env}
    try:
        stack.start_components()
        await asyncio.to_thread(
            stack.run_gateway_admin,
            "dev-workspace",
            "demo",
            "--write-key-file",
            str(tmp_path / "wk"),
            "--secret-key-file",
            str(tmp_path / "sk"),
        )
        await asyncio.to_thread(stack.wait_serving, timeout=60)
        yield RunningStack(
            stack, (tmp_path / "wk").read_text().strip(), (tmp_path / "sk").read_text().strip(), log_path
        )
    finally:
        await asyncio.to_thread(stack.stop)
        log.close()
        if os.environ.get("CDP_E2E_SHOW_LOGS"):
            print(log_path.read_text())
