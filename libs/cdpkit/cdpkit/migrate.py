"""Numbered SQL migrations, one schema per service, applied under an advisory lock.

A service keeps ``migrations/0001_init.sql``, ``0002_...sql`` next to its package. The kit
adds its own (``kit:0001_outbox`` ...: the outbox and inbox tables every service has) first.
Each file runs in its own transaction with ``search_path`` set to the service schema and is
recorded in ``<schema>.schema_migrations`` with a checksum; editing an applied file is an
error, never a silent re-run. Concurrent starters serialise on ``pg_advisory_lock``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from cdpkit.db import check_schema_name

log = structlog.get_logger(__name__)

KIT_MIGRATIONS = Path(__file__).parent / "migrations"
_FILENAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path, prefix: str = "") -> list[Migration]:
    """The migrations in ``directory``, in order; rejects badly named or duplicate numbers."""
    migrations: list[Migration] = []
    seen: set[str] = set()
    for path in sorted(directory.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: name must look like 0001_description.sql")
        if match.group(1) in seen:
            raise MigrationError(f"{path}: duplicate migration number {match.group(1)}")
        seen.add(match.group(1))
        migrations.append(Migration(version=prefix + path.stem, sql=path.read_text()))
    return migrations


def _lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"cdp-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(dsn: str, schema: str, directory: Path) -> list[str]:
    """Apply pending migrations of ``schema``; returns the versions applied now."""
    check_schema_name(schema)
    plan = discover(KIT_MIGRATIONS, prefix="kit:") + discover(directory)
    conn = await asyncpg.connect(dsn, server_settings={"application_name": f"{schema}-migrate"})
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(schema))
        try:
            return await _apply(conn, schema, plan)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(schema))
    finally:
        await conn.close()


async def pending(dsn: str, schema: str, directory: Path) -> list[str]:
    """Versions this code ships that the database has not applied (read-only: any role that can
    read ``<schema>.schema_migrations`` may ask, e.g. a service waiting for its migration Job)."""
    check_schema_name(schema)
    plan = discover(KIT_MIGRATIONS, prefix="kit:") + discover(directory)
    conn = await asyncpg.connect(dsn, server_settings={"application_name": f"{schema}-migrate-check"})
    try:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.schema_migrations")
        applied = (
            {r["version"]: r["checksum"] for r in await conn.fetch(f"SELECT * FROM {schema}.schema_migrations")}
            if exists
            else {}
        )
    finally:
        await conn.close()
    for migration in plan:
        if migration.version in applied and applied[migration.version] != migration.checksum:
            raise MigrationError(f"{schema}: migration {migration.version} was edited after it was applied")
    return [m.version for m in plan if m.version not in applied]


async def _apply(conn: asyncpg.Connection, schema: str, plan: list[Migration]) -> list[str]:
    # Only when missing: a role limited to its own (pre-created) schema has no CREATE on the
    # database, and PostgreSQL checks that privilege even for CREATE SCHEMA IF NOT EXISTS.
    if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
        await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                version text PRIMARY KEY,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied = {r["version"]: r["checksum"] for r in await conn.fetch(f"SELECT * FROM {schema}.schema_migrations")}
    known = {m.version for m in plan}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(f"{schema}: database has migrations this code does not know: {unknown}")
    done: list[str] = []
    for migration in plan:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(f"{schema}: migration {migration.version} was edited after it was applied")
            continue
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {schema}")
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (version, checksum) VALUES ($1, $2)",
                migration.version,
                migration.checksum,
            )
        log.info("migration applied", schema=schema, version=migration.version)
        done.append(migration.version)
    return done
