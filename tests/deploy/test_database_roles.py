"""deploy/k8s/base/db/roles.sql on a real PostgreSQL: each component's roles reach its schema only.

The migration Jobs run ``python -m cdp_<component> migrate`` as ``cdp_<component>`` (owner of
its schema, no CREATE on the database); the services run as ``cdp_<component>_app`` (DML only).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP_SH = ROOT / "deploy/k8s/base/db/setup-roles.sh"
COMPONENTS = ("gateway", "identity", "profile", "segment", "campaign")
# A table each component's first migration creates.
TABLE = {
    "gateway": "api_keys",
    "identity": "persons",
    "profile": "profiles",
    "segment": "segments",
    "campaign": "journeys",
}


def as_user(url: str, user: str, database: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{user}@{host}", path=f"/{database}"))


def setup_roles(server_url: str, database: str, passwords: dict[str, str]) -> subprocess.CompletedProcess:
    """deploy/k8s/base/db/setup-roles.sh, as the dev db-setup Job and compose run it (psql, libpq env)."""
    from cdp_devstack.infra import POSTGRES_BIN_PATH

    parts = urlsplit(server_url)
    env = {
        "PATH": f"{POSTGRES_BIN_PATH}:{os.environ['PATH']}",
        "PGHOST": parts.hostname,
        "PGPORT": str(parts.port or 5432),
        "PGUSER": parts.username,
        "PGDATABASE": database,
        **passwords,
    }
    if parts.password:
        env["PGPASSWORD"] = parts.password
    return subprocess.run(["sh", str(SETUP_SH)], env=env, capture_output=True, text=True, check=False)


@pytest.fixture
async def roles_database(postgres_server_url):
    """A fresh database set up by setup-roles.sh (run twice: it is idempotent)."""
    name = f"roles_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url)
    existing = {r["rolname"] for r in await admin.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE 'cdp\\_%'")}
    await admin.execute(f'CREATE DATABASE "{name}"')
    roles = [f"cdp_{c}{suffix}" for c in COMPONENTS for suffix in ("", "_app")]
    passwords = {f"PW_{c.upper()}_{kind}": uuid.uuid4().hex for c in COMPONENTS for kind in ("OWNER", "APP")}
    try:
        for _ in range(2):
            result = await asyncio.to_thread(setup_roles, postgres_server_url, name, passwords)
            assert result.returncode == 0, result.stderr + result.stdout
            assert "roles ready" in result.stdout
        logins = await admin.fetch(
            "SELECT rolname, rolcanlogin, rolpassword IS NOT NULL AS has_password"
            " FROM pg_authid WHERE rolname = ANY($1)",
            roles,
        )
        assert {r["rolname"] for r in logins if r["rolcanlogin"] and r["has_password"]} == set(roles)
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in roles:
            if role not in existing:  # never touch roles of a real deployment on an external server
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


def migrate(component: str, url: str, pii_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run(component, url, pii_env, "migrate", *args)


def run(component: str, url: str, extra_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update(extra_env)
    env.update({"CDP_DATABASE_URL": url, "CDP_LOG_FORMAT": "json"})
    return subprocess.run(
        [sys.executable, "-m", f"cdp_{component}", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


async def test_each_component_migrates_and_runs_with_roles_limited_to_its_schema(
    roles_database, postgres_server_url, pii_env
):
    urls = {
        (c, kind): as_user(postgres_server_url, f"cdp_{c}{'_app' if kind == 'app' else ''}", roles_database)
        for c in COMPONENTS
        for kind in ("owner", "app")
    }
    # The pods' init container (as the app role) waits while the schema is behind the image...
    waiting = await asyncio.to_thread(migrate, "identity", urls["identity", "app"], pii_env, "--wait", "0")
    assert waiting.returncode == 3, waiting.stderr + waiting.stdout
    assert "migrations still pending" in waiting.stdout + waiting.stderr
    # ...the migration Job's command, as the owner role, works although it may not create schemas...
    for component in COMPONENTS:
        result = await asyncio.to_thread(migrate, component, urls[component, "owner"], pii_env)
        assert result.returncode == 0, f"{component} migrate failed:\n{result.stderr}{result.stdout}"

    # ...and then the init container lets the pod start.
    for component in COMPONENTS:
        ready = await asyncio.to_thread(migrate, component, urls[component, "app"], pii_env, "--wait", "5")
        assert ready.returncode == 0, ready.stderr + ready.stdout

    for component in COMPONENTS:
        others = [c for c in COMPONENTS if c != component]
        app = await asyncpg.connect(urls[component, "app"])
        owner = await asyncpg.connect(urls[component, "owner"])
        try:
            # The service's role reads and writes its own tables (the kit's outbox too)...
            await app.fetch(f"SELECT * FROM {component}.{TABLE[component]} LIMIT 1")
            seq = await app.fetchval(
                f"INSERT INTO {component}.outbox (workspace_id, subject, msg_id, payload) "
                "VALUES ('w', 's', 'm', '\\x00') RETURNING seq"
            )
            assert await app.execute(f"DELETE FROM {component}.outbox WHERE seq = $1", seq) == "DELETE 1"
            # ...but changes no schema, and sees no other component's data.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(f"CREATE TABLE {component}.intruder (workspace_id text)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(f"DROP TABLE {component}.{TABLE[component]}")
            for other in others:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app.fetch(f"SELECT * FROM {other}.{TABLE[other]} LIMIT 1")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await owner.fetch(f"SELECT * FROM {other}.{TABLE[other]} LIMIT 1")
            # Neither role can make a schema or use public.
            for conn in (app, owner):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("CREATE SCHEMA intruder")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("CREATE TABLE public.intruder (workspace_id text)")
        finally:
            await app.close()
            await owner.close()

    # Admin commands run as the app role where a Job migrates (they only read and write rows).
    admin_env = {**pii_env, "CDP_MIGRATE_ON_START": "false"}
    admin = await asyncio.to_thread(
        run, "gateway", urls["gateway", "app"], admin_env, "admin", "create-workspace", "shop"
    )
    assert admin.returncode == 0, admin.stderr + admin.stdout

    # Re-running the migrations is a no-op, and roles.sql after them keeps the app's grants.
    result = await asyncio.to_thread(migrate, "identity", urls["identity", "owner"], pii_env)
    assert result.returncode == 0, result.stderr
