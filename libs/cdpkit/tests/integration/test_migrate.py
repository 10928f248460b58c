"""cdpkit.migrate against a real PostgreSQL: order, bookkeeping, safety checks, concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from cdpkit.migrate import MigrationError, discover, migrate

KIT = ["kit:0001_outbox_inbox", "kit:0002_outbox_sealed"]


def write(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(sql)
    return path


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    # 0001 relies on the kit's outbox: proves the kit's migrations run first.
    write(
        directory,
        "0001_init.sql",
        "CREATE TABLE things (id int PRIMARY KEY, workspace_id text NOT NULL);\n"
        "ALTER TABLE outbox ADD COLUMN note text;",
    )
    write(
        directory,
        "0002_more.sql",
        "ALTER TABLE things ADD COLUMN label text;\nINSERT INTO things VALUES (1, 'w', 'one');",
    )
    return directory


async def fetch(dsn: str, query: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def test_applies_kit_then_service_migrations_into_the_schema(database_url, migrations):
    applied = await migrate(database_url, "svc", migrations)
    assert applied == [*KIT, "0001_init", "0002_more"]
    rows = await fetch(
        database_url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'svc' ORDER BY table_name",
    )
    assert [r["table_name"] for r in rows] == ["inbox", "outbox", "schema_migrations", "things"]
    # Nothing leaked into public: migrations run with search_path = the schema.
    assert await fetch(database_url, "SELECT 1 FROM information_schema.tables WHERE table_schema = 'public'") == []
    assert [tuple(r) for r in await fetch(database_url, "SELECT id, label FROM svc.things")] == [(1, "one")]


async def test_records_each_version_with_its_checksum(database_url, migrations):
    await migrate(database_url, "svc", migrations)
    rows = await fetch(database_url, "SELECT version, checksum FROM svc.schema_migrations ORDER BY applied_at, version")
    assert [r["version"] for r in rows] == [*KIT, "0001_init", "0002_more"]
    plan = {m.version: m.checksum for m in discover(migrations)}
    checksums = {r["version"]: r["checksum"] for r in rows}
    assert checksums["0001_init"] == plan["0001_init"] and checksums["0002_more"] == plan["0002_more"]
    assert all(len(r["checksum"]) == 64 for r in rows)


async def test_rerun_is_a_no_op_and_new_files_are_applied_later(database_url, migrations):
    await migrate(database_url, "svc", migrations)
    assert await migrate(database_url, "svc", migrations) == []
    write(migrations, "0003_index.sql", "CREATE INDEX things_label ON things (label);")
    assert await migrate(database_url, "svc", migrations) == ["0003_index"]
    assert len(await fetch(database_url, "SELECT 1 FROM svc.things")) == 1  # 0002's insert did not run again


async def test_two_schemas_in_one_database_are_independent(database_url, migrations, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write(other, "0001_init.sql", "CREATE TABLE widgets (workspace_id text NOT NULL);")
    assert await migrate(database_url, "svc", migrations) == [*KIT, "0001_init", "0002_more"]
    assert await migrate(database_url, "other", other) == [*KIT, "0001_init"]
    rows = await fetch(database_url, "SELECT version FROM other.schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == ["0001_init", *KIT]


async def test_editing_an_applied_migration_is_refused(database_url, migrations):
    await migrate(database_url, "svc", migrations)
    write(migrations, "0001_init.sql", "CREATE TABLE things (id bigint PRIMARY KEY);")
    write(migrations, "0003_new.sql", "CREATE TABLE newer (workspace_id text);")
    with pytest.raises(MigrationError, match="0001_init was edited"):
        await migrate(database_url, "svc", migrations)
    rows = await fetch(database_url, "SELECT version FROM svc.schema_migrations")
    assert "0003_new" not in {r["version"] for r in rows}  # nothing after the refusal ran


async def test_unknown_applied_versions_are_refused(database_url, migrations):
    await migrate(database_url, "svc", migrations)
    (migrations / "0002_more.sql").unlink()  # code rolled back to an older release
    with pytest.raises(MigrationError, match="does not know") as error:
        await migrate(database_url, "svc", migrations)
    assert "0002_more" in str(error.value)


@pytest.mark.parametrize(
    "bad_name", ["1_init.sql", "0001-init.sql", "0001_Init.sql", "00001_init.sql", "0001_.sql", "init.sql"]
)
async def test_badly_named_files_are_rejected_before_touching_the_database(database_url, tmp_path, bad_name):
    write(tmp_path, bad_name, "CREATE TABLE t (workspace_id text);")
    with pytest.raises(MigrationError, match=r"0001_description\.sql"):
        await migrate(database_url, "svc", tmp_path)
    assert await fetch(database_url, "SELECT 1 FROM information_schema.schemata WHERE schema_name = 'svc'") == []


async def test_duplicate_numbers_are_rejected(database_url, tmp_path):
    write(tmp_path, "0001_a.sql", "SELECT 1;")
    write(tmp_path, "0001_b.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="duplicate migration number 0001"):
        await migrate(database_url, "svc", tmp_path)


async def test_invalid_schema_name_is_rejected(database_url, tmp_path):
    with pytest.raises(ValueError, match="invalid schema name"):
        await migrate(database_url, "svc; DROP SCHEMA public", tmp_path)


async def test_a_failing_migration_is_rolled_back_whole_and_can_be_fixed(database_url, tmp_path):
    write(tmp_path, "0001_ok.sql", "CREATE TABLE a (workspace_id text);")
    write(tmp_path, "0002_broken.sql", "CREATE TABLE b (workspace_id text);\nCREATE TABLE c (oops nosuchtype);")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(database_url, "svc", tmp_path)
    rows = await fetch(database_url, "SELECT version FROM svc.schema_migrations")
    assert {r["version"] for r in rows} == {*KIT, "0001_ok"}
    assert await fetch(database_url, "SELECT 1 FROM information_schema.tables WHERE table_name = 'b'") == []
    write(tmp_path, "0002_broken.sql", "CREATE TABLE b (workspace_id text);")
    assert await migrate(database_url, "svc", tmp_path) == ["0002_broken"]


async def test_concurrent_migrations_apply_each_file_exactly_once(database_url, tmp_path):
    # Not idempotent on purpose: a second run of 0002 would fail on the primary key.
    write(tmp_path, "0001_counter.sql", "CREATE TABLE runs (workspace_id text, version text PRIMARY KEY);")
    write(tmp_path, "0002_count.sql", "SELECT pg_sleep(0.2); INSERT INTO runs VALUES ('w', '0002');")
    write(tmp_path, "0003_count.sql", "INSERT INTO runs VALUES ('w', '0003');")
    results = await asyncio.gather(*(migrate(database_url, "svc", tmp_path) for _ in range(5)))
    applied = [version for result in results for version in result]
    assert sorted(applied) == sorted([*KIT, "0001_counter", "0002_count", "0003_count"])
    assert sorted(results, key=len)[:4] == [[], [], [], []]
    rows = await fetch(database_url, "SELECT version FROM svc.runs ORDER BY version")
    assert [r["version"] for r in rows] == ["0002", "0003"]
    assert len(await fetch(database_url, "SELECT 1 FROM svc.schema_migrations")) == len(KIT) + 3


async def test_the_advisory_lock_is_released_after_a_failure(database_url, tmp_path):
    write(tmp_path, "0001_bad.sql", "SELECT * FROM nowhere;")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(database_url, "svc", tmp_path)
    write(tmp_path, "0001_bad.sql", "SELECT 1;")
    # Would hang if the lock were still held by a leaked session.
    assert await asyncio.wait_for(migrate(database_url, "svc", tmp_path), 5) == ["0001_bad"]
