"""Session-wide test infrastructure: one real PostgreSQL and one real NATS (JetStream) server.

Started from the pip wheels on free ports, or taken from ``CDP_DATABASE_URL`` /
``CDP_NATS_URL`` when those are set. Tests get isolation cheaply: a fresh database per test
(``database_url``) and a fresh subject/stream namespace per test (``bus_prefix``).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest

from cdp_devstack.infra import NatsServer, PostgresServer, free_port


@pytest.fixture(scope="session")
def _scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cdp-test-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def postgres_server_url(_scratch_dir: Path) -> Iterator[str]:
    """URL of a database on the test PostgreSQL server (external when CDP_DATABASE_URL is set)."""
    external = os.environ.get("CDP_DATABASE_URL")
    if external:
        yield external
        return
    server = PostgresServer(_scratch_dir / "postgres", free_port(), fast=True)
    server.start()
    try:
        yield server.dsn("cdp")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(_scratch_dir: Path) -> Iterator[str]:
    external = os.environ.get("CDP_NATS_URL")
    if external:
        yield external
        return
    server = NatsServer(_scratch_dir / "nats", free_port(), free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
async def database_url(postgres_server_url: str) -> str:
    """A new, empty database for this test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(postgres_server_url, name)
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def bus_prefix(nats_url: str) -> str:
    """A NATS namespace of this test's own; its streams are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            # The streams, and the KV buckets (KV_{PREFIX}_...) of partition leases.
            if info.config.name.startswith((prefix.upper() + "_", f"KV_{prefix.upper()}_")):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


@pytest.fixture(scope="session")
def pii_env() -> dict[str, str]:
    """Random PII keys for the session (services that store personal data require them)."""
    from cdpkit.pii import new_key

    return {"CDP_PII_KEYS": f"test1:{new_key()}", "CDP_PII_HASH_KEY": new_key()}


@pytest.fixture
def service_env(database_url: str, nats_url: str, bus_prefix: str, pii_env: dict[str, str]) -> dict[str, str]:
    """Environment for a service under test: this test's database and namespace, free ports."""
    return {
        **pii_env,
        "CDP_DATABASE_URL": database_url,
        "CDP_NATS_URL": nats_url,
        "CDP_BUS_PREFIX": bus_prefix,
        "CDP_LOG_FORMAT": "console",
        "CDP_SHUTDOWN_GRACE_SECONDS": "2",
    }


@pytest.fixture
async def run_service(service_env):
    """Start a service in this event loop: ``runtime = await run_service(package_main, Settings, **env)``.

    Migrates its schema into this test's database, binds gRPC and /metrics to free ports,
    and stops it (gracefully) at the end of the test.
    """
    from cdpkit.config import load
    from cdpkit.migrate import migrate

    started = []

    async def start(main_module, settings_class, **extra_env):
        service = main_module.__name__.split(".")[0].removeprefix("cdp_").upper()
        env = {**service_env, f"CDP_{service}_GRPC_PORT": "0", f"CDP_{service}_METRICS_PORT": "0", **extra_env}
        settings = load(settings_class, env)
        await migrate(settings.database_url.get(), main_module.SCHEMA, main_module.MIGRATIONS)
        runtime = await main_module.bootstrap(settings)
        await runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in reversed(started):
        await runtime.stop()
