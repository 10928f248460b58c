"""SQL for the identity schema. Every query is scoped by workspace_id.

Identifier values are passed in as lookup keys (``Key`` = (type, key)): the plaintext for
ordinary types, ``h:<keyed hash>`` for PII types; sealed display values travel alongside.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

Key = tuple[str, str]


@dataclass(frozen=True)
class PersonRow:
    person_id: str
    status: str
    merged_into: str | None
    merge_count: int
    quarantine_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class IdentifierRow:
    key: Key
    person_id: str | None
    sealed: bytes | None
    anchor: Key | None
    message_id: str | None
    origin_person_id: str | None
    rule: str | None
    linked_at: datetime
    blocked_reason: str | None = None


@dataclass(frozen=True)
class NewLink:
    key: Key
    sealed: bytes | None
    person_id: str
    anchor: Key | None
    message_id: str
    home: str
    rule: str


@dataclass(frozen=True)
class MergeRow:
    merge_id: str
    survivor_id: str
    merged_id: str
    anchor: Key
    anchor_sealed: bytes | None
    bridge: Key
    bridge_sealed: bytes | None
    message_id: str
    rule: str
    rule_version: int
    kind: str
    created_at: datetime | None = None
    undone_at: datetime | None = None
    undo_reason: str | None = None


@dataclass(frozen=True)
class ConflictRow:
    conflict_id: str
    kind: str
    key: Key
    sealed: bytes | None
    person_id: str | None
    other_person_id: str | None
    message_id: str
    detail: str
    rule_version: int
    created_at: datetime | None = None


# Rules ----------------------------------------------------------------------------------------


async def rules_version(conn: asyncpg.Connection, workspace_id: str) -> int:
    return await conn.fetchval("SELECT coalesce(max(version), 0) FROM rules WHERE workspace_id = $1", workspace_id)


async def load_rules(conn: asyncpg.Connection, workspace_id: str, version: int) -> tuple[dict, str, datetime] | None:
    row = await conn.fetchrow(
        "SELECT document, comment, created_at FROM rules WHERE workspace_id = $1 AND version = $2",
        workspace_id,
        version,
    )
    return None if row is None else (row["document"], row["comment"], row["created_at"])


async def insert_rules(
    conn: asyncpg.Connection, workspace_id: str, version: int, document: dict, comment: str
) -> datetime | None:
    """None when that version already exists (a concurrent update won)."""
    return await conn.fetchval(
        """INSERT INTO rules (workspace_id, version, document, comment) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING created_at""",
        workspace_id,
        version,
        document,
        comment,
    )


# Locks and reads for resolution -------------------------------------------------------------------


async def lock_workspace_links(conn: asyncpg.Connection, workspace_id: str) -> None:
    """Exclusive: no other change to this workspace's graph until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('identity-links:' || $1, 0))", workspace_id)


async def lock_workspace_shared(conn: asyncpg.Connection, workspace_id: str) -> None:
    """Shared: resolvers run side by side; graph surgery (unmerge, removal) waits for them."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('identity-links:' || $1, 0))", workspace_id
    )


async def lock_persons(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str], *, wait: bool) -> bool:
    """Row-lock persons in id order (so two lockers never wait on each other in a cycle).

    With ``wait=False`` answers False instead of waiting when one is locked elsewhere.
    """
    if not person_ids:
        return True
    try:
        await conn.execute(
            f"""SELECT 1 FROM persons WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
                ORDER BY person_id FOR UPDATE{"" if wait else " NOWAIT"}""",
            workspace_id,
            sorted(person_ids),
        )
    except asyncpg.exceptions.LockNotAvailableError:
        return False
    return True


async def owners(
    conn: asyncpg.Connection, workspace_id: str, keys: Iterable[Key]
) -> dict[Key, tuple[str | None, str | None]]:
    """Who holds each key and its home person (absent: nobody; holder None: removed and blocked)."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT i.id_type, i.id_value, i.person_id::text AS person_id,
                  coalesce(i.origin_person_id, i.person_id)::text AS home
           FROM identifiers i
           JOIN unnest($2::text[], $3::text[]) AS w(id_type, id_value)
             ON i.id_type = w.id_type AND i.id_value = w.id_value
           WHERE i.workspace_id = $1""",
        workspace_id,
        [k[0] for k in wanted],
        [k[1] for k in wanted],
    )
    return {(r["id_type"], r["id_value"]): (r["person_id"], r["home"]) for r in rows}


async def person_links(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]
) -> tuple[dict[str, PersonRow], dict[str, list[tuple[str, datetime]]]]:
    """Persons and the (type, linked_at) of their identifiers."""
    if not person_ids:
        return {}, {}
    persons = await conn.fetch(
        """SELECT person_id::text AS person_id, status, merged_into::text AS merged_into, merge_count,
                  quarantine_reason, created_at, updated_at
           FROM persons WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
        workspace_id,
        list(person_ids),
    )
    links = await conn.fetch(
        """SELECT person_id::text AS person_id, id_type, first_seen_at FROM identifiers
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
        workspace_id,
        list(person_ids),
    )
    by_person: dict[str, list[tuple[str, datetime]]] = {p: [] for p in person_ids}
    for r in links:
        by_person[r["person_id"]].append((r["id_type"], r["first_seen_at"]))
    return {r["person_id"]: PersonRow(**dict(r)) for r in persons}, by_person


async def separations(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> set[frozenset[str]]:
    if not person_ids:
        return set()
    rows = await conn.fetch(
        """SELECT person_a::text AS a, person_b::text AS b FROM separations
           WHERE workspace_id = $1 AND (person_a = ANY($2::uuid[]) OR person_b = ANY($2::uuid[]))""",
        workspace_id,
        list(person_ids),
    )
    return {frozenset((r["a"], r["b"])) for r in rows}


async def journal_seen(conn: asyncpg.Connection, workspace_id: str, message_ids: Sequence[str]) -> set[str]:
    if not message_ids:
        return set()
    rows = await conn.fetch(
        "SELECT message_id FROM journal WHERE workspace_id = $1 AND message_id = ANY($2::text[])",
        workspace_id,
        list(message_ids),
    )
    return {r["message_id"] for r in rows}


async def journal_identifiers(
    conn: asyncpg.Connection, workspace_id: str, message_ids: Sequence[str]
) -> dict[str, bytes]:
    """The sealed identifier sets journaled for these message ids."""
    rows = await conn.fetch(
        "SELECT message_id, identifiers FROM journal WHERE workspace_id = $1 AND message_id = ANY($2::text[])",
        workspace_id,
        list(message_ids),
    )
    return {r["message_id"]: r["identifiers"] for r in rows}


# Writes of a resolution ------------------------------------------------------------------------------


async def insert_persons(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    if person_ids:
        await conn.execute(
            "INSERT INTO persons (workspace_id, person_id) SELECT $1, unnest($2::uuid[])",
            workspace_id,
            list(person_ids),
        )


async def insert_links(conn: asyncpg.Connection, workspace_id: str, links: Sequence[NewLink], now: datetime) -> int:
    """Insert new identifiers in key order; returns how many were inserted (fewer: another
    transaction linked one of them first, and the caller must start over)."""
    if not links:
        return 0
    links = sorted(links, key=lambda link: link.key)
    result = await conn.execute(
        """INSERT INTO identifiers (workspace_id, id_type, id_value, sealed, person_id, anchor_type, anchor_value,
                                    source_message_id, origin_person_id, rule, first_seen_at)
           SELECT $1, t, v, s, p, at, av, m, o, r, $11
           FROM unnest($2::text[], $3::text[], $4::bytea[], $5::uuid[], $6::text[], $7::text[], $8::text[],
                       $9::uuid[], $10::text[]) WITH ORDINALITY AS x(t, v, s, p, at, av, m, o, r, n)
           ORDER BY n
           ON CONFLICT DO NOTHING""",
        workspace_id,
        [link.key[0] for link in links],
        [link.key[1] for link in links],
        [link.sealed for link in links],
        [link.person_id for link in links],
        [link.anchor[0] if link.anchor else None for link in links],
        [link.anchor[1] if link.anchor else None for link in links],
        [link.message_id for link in links],
        [link.home for link in links],
        [link.rule for link in links],
        now,
    )
    return int(result.split()[-1])


async def apply_merges(conn: asyncpg.Connection, workspace_id: str, moves: Sequence[tuple[str, str]]) -> None:
    """Merge persons: rows of (merged, final survivor). Identifiers move to the survivor, the merged
    person (and those merged into it before) resolve to it, and its separations become the survivor's."""
    if not moves:
        return
    merged = [m for m, _ in moves]
    survivors = [s for _, s in moves]
    await conn.execute(
        """UPDATE identifiers i SET person_id = m.survivor
           FROM unnest($2::uuid[], $3::uuid[]) AS m(merged, survivor)
           WHERE i.workspace_id = $1 AND i.person_id = m.merged""",
        workspace_id,
        merged,
        survivors,
    )
    # Merged-away persons (and those merged into them before) resolve to the final survivor.
    await conn.execute(
        """UPDATE persons p SET status = 'merged', merged_into = m.survivor, updated_at = now()
           FROM unnest($2::uuid[], $3::uuid[]) AS m(merged, survivor)
           WHERE p.workspace_id = $1 AND (p.person_id = m.merged OR p.merged_into = m.merged)""",
        workspace_id,
        merged,
        survivors,
    )
    # An operator split the merged person from someone: the survivor stays apart from them too.
    await conn.execute(
        """INSERT INTO separations (workspace_id, person_a, person_b, merge_id)
           SELECT $1, least(m.survivor, o.other), greatest(m.survivor, o.other), s.merge_id
           FROM unnest($2::uuid[], $3::uuid[]) AS m(merged, survivor)
           JOIN separations s ON s.workspace_id = $1 AND m.merged IN (s.person_a, s.person_b)
           CROSS JOIN LATERAL (SELECT CASE WHEN s.person_a = m.merged THEN s.person_b ELSE s.person_a END) AS o(other)
           WHERE o.other <> m.survivor
           ORDER BY 2, 3
           ON CONFLICT DO NOTHING""",
        workspace_id,
        merged,
        survivors,
    )


async def update_persons(
    conn: asyncpg.Connection, workspace_id: str, rows: Sequence[tuple[str, str, int, str | None]]
) -> None:
    """Set (person, status, merge_count, quarantine reason) and touch updated_at."""
    if not rows:
        return
    await conn.execute(
        """UPDATE persons p SET status = u.status, merge_count = u.merge_count, updated_at = now(),
                  quarantine_reason = coalesce(u.reason, p.quarantine_reason),
                  quarantined_at = CASE WHEN u.status = 'quarantined' AND p.status <> 'quarantined' THEN now()
                                        ELSE p.quarantined_at END
           FROM unnest($2::uuid[], $3::text[], $4::int[], $5::text[]) AS u(person_id, status, merge_count, reason)
           WHERE p.workspace_id = $1 AND p.person_id = u.person_id""",
        workspace_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


async def insert_merges(conn: asyncpg.Connection, workspace_id: str, merges: Sequence[MergeRow]) -> None:
    if not merges:
        return
    await conn.executemany(
        """INSERT INTO merges (workspace_id, merge_id, survivor_id, merged_id, anchor_type, anchor_value, anchor_sealed,
                               bridge_type, bridge_value, bridge_sealed, message_id, rule, rule_version, kind)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
        [
            (
                workspace_id,
                m.merge_id,
                m.survivor_id,
                m.merged_id,
                m.anchor[0],
                m.anchor[1],
                m.anchor_sealed,
                m.bridge[0],
                m.bridge[1],
                m.bridge_sealed,
                m.message_id,
                m.rule,
                m.rule_version,
                m.kind,
            )
            for m in merges
        ],
    )


async def insert_separations(
    conn: asyncpg.Connection, workspace_id: str, pairs: Sequence[tuple[str, str, str | None]]
) -> None:
    if pairs:
        await conn.executemany(
            """INSERT INTO separations (workspace_id, person_a, person_b, merge_id) VALUES ($1, $2, $3, $4)
               ON CONFLICT DO NOTHING""",
            [(workspace_id, min(a, b), max(a, b), m) for a, b, m in pairs],
        )


async def insert_conflicts(
    conn: asyncpg.Connection, workspace_id: str, conflicts: Sequence[ConflictRow], now: datetime
) -> list[str]:
    """Insert, skipping ones already recorded for the same (kind, identifier, person); returns the
    ids inserted (in unique-key order, so two batches never wait on each other in a cycle)."""
    if not conflicts:
        return []
    conflicts = sorted(conflicts, key=lambda c: (c.kind, c.key, c.person_id or ""))
    rows = await conn.fetch(
        """INSERT INTO conflicts (workspace_id, conflict_id, kind, id_type, id_value, sealed, person_id,
                                  other_person_id, message_id, detail, rule_version, created_at)
           SELECT $1, c, k, t, v, s, p, o, m, d, r, $12
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::uuid[], $8::uuid[],
                       $9::text[], $10::text[], $11::int[]) WITH ORDINALITY AS x(c, k, t, v, s, p, o, m, d, r, n)
           ORDER BY n
           ON CONFLICT DO NOTHING RETURNING conflict_id::text""",
        workspace_id,
        [c.conflict_id for c in conflicts],
        [c.kind for c in conflicts],
        [c.key[0] for c in conflicts],
        [c.key[1] for c in conflicts],
        [c.sealed for c in conflicts],
        [c.person_id or None for c in conflicts],
        [c.other_person_id for c in conflicts],
        [c.message_id for c in conflicts],
        [c.detail for c in conflicts],
        [c.rule_version for c in conflicts],
        now,
    )
    return [r["conflict_id"] for r in rows]


async def prune_conflicts(conn: asyncpg.Connection, before: datetime) -> int:
    return await _prune(conn, "conflicts", "created_at", before)


async def _prune(conn: asyncpg.Connection, table: str, column: str, before: datetime, limit: int = 10_000) -> int:
    """Delete up to ``limit`` rows older than ``before`` (in every workspace); how many went."""
    result = await conn.execute(
        f"""DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2))""",
        before,
        limit,
    )
    return int(result.split()[-1])


async def insert_journal(
    conn: asyncpg.Connection, workspace_id: str, rows: Sequence[tuple[str, str | None, bytes]], now: datetime
) -> None:
    """(message id, person id or None, sealed identifiers); a message already journaled is kept as it was."""
    if rows:
        await conn.execute(
            """INSERT INTO journal (workspace_id, message_id, person_id, identifiers, resolved_at)
               SELECT $1, m, p, i, $5 FROM unnest($2::text[], $3::uuid[], $4::bytea[]) AS x(m, p, i)
               ON CONFLICT DO NOTHING""",
            workspace_id,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            now,
        )


async def prune_journal(conn: asyncpg.Connection, before: datetime) -> int:
    return await _prune(conn, "journal", "resolved_at", before)


async def journal_window(
    conn: asyncpg.Connection, workspace_id: str, days: int, limit: int, now: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT message_id, identifiers, resolved_at FROM journal
           WHERE workspace_id = $1 AND resolved_at >= $4::timestamptz - make_interval(days => $2)
           ORDER BY seq LIMIT $3""",
        workspace_id,
        days,
        limit,
        now,
    )


# Reads for the API ----------------------------------------------------------------------------------


_IDENTIFIER_COLUMNS = """id_type, id_value, person_id::text AS person_id, sealed, anchor_type, anchor_value,
    source_message_id, origin_person_id::text AS origin_person_id, rule, first_seen_at, blocked_reason"""


def _identifier(r: Any) -> IdentifierRow:
    return IdentifierRow(
        key=(r["id_type"], r["id_value"]),
        person_id=r["person_id"],
        sealed=r["sealed"],
        anchor=(r["anchor_type"], r["anchor_value"]) if r["anchor_type"] is not None else None,
        message_id=r["source_message_id"],
        origin_person_id=r["origin_person_id"] or r["person_id"],
        rule=r["rule"],
        linked_at=r["first_seen_at"],
        blocked_reason=r["blocked_reason"],
    )


async def get_person(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> PersonRow | None:
    row = await conn.fetchrow(
        """SELECT person_id::text AS person_id, status, merged_into::text AS merged_into, merge_count,
                  quarantine_reason, created_at, updated_at
           FROM persons WHERE workspace_id = $1 AND person_id = $2::uuid""",
        workspace_id,
        person_id,
    )
    return None if row is None else PersonRow(**dict(row))


async def identifiers_of(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> list[IdentifierRow]:
    rows = await conn.fetch(
        f"""SELECT {_IDENTIFIER_COLUMNS} FROM identifiers WHERE workspace_id = $1 AND person_id = $2::uuid
            ORDER BY first_seen_at, id_type, id_value""",
        workspace_id,
        person_id,
    )
    return [_identifier(r) for r in rows]


async def identifier(conn: asyncpg.Connection, workspace_id: str, key: Key) -> IdentifierRow | None:
    row = await conn.fetchrow(
        f"SELECT {_IDENTIFIER_COLUMNS} FROM identifiers WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3",
        workspace_id,
        key[0],
        key[1],
    )
    return None if row is None else _identifier(row)


async def merged_persons(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT person_id::text AS p FROM persons WHERE workspace_id = $1 AND merged_into = $2::uuid
           ORDER BY person_id""",
        workspace_id,
        person_id,
    )
    return [r["p"] for r in rows]


_MERGE_COLUMNS = """merge_id::text AS merge_id, survivor_id::text AS survivor_id, merged_id::text AS merged_id,
    anchor_type, anchor_value, anchor_sealed, bridge_type, bridge_value, bridge_sealed, message_id, rule,
    rule_version, kind, created_at, undone_at, undo_reason"""


def _merge(r: Any) -> MergeRow:
    return MergeRow(
        anchor=(r["anchor_type"], r["anchor_value"]),
        bridge=(r["bridge_type"], r["bridge_value"]),
        **_without(r, "anchor_type", "anchor_value", "bridge_type", "bridge_value"),
    )


async def get_merge(conn: asyncpg.Connection, workspace_id: str, merge_id: str) -> MergeRow | None:
    row = await conn.fetchrow(
        f"SELECT {_MERGE_COLUMNS} FROM merges WHERE workspace_id = $1 AND merge_id = $2::uuid", workspace_id, merge_id
    )
    return None if row is None else _merge(row)


async def merges_involving(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str], *, active_only: bool, limit: int = 10_000
) -> list[MergeRow]:
    rows = await conn.fetch(
        f"""SELECT {_MERGE_COLUMNS} FROM merges
            WHERE workspace_id = $1 AND (survivor_id = ANY($2::uuid[]) OR merged_id = ANY($2::uuid[]))
              AND ($3::boolean IS FALSE OR undone_at IS NULL)
            ORDER BY created_at DESC, merge_id DESC LIMIT $4""",
        workspace_id,
        list(person_ids),
        active_only,
        limit,
    )
    return [_merge(r) for r in rows]


async def list_merges(
    conn: asyncpg.Connection,
    workspace_id: str,
    *,
    person_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[MergeRow]:
    rows = await _newest_first(
        conn, "merges", _MERGE_COLUMNS, "merge_id", ("survivor_id", "merged_id"), workspace_id, person_id, after, limit
    )
    return [_merge(r) for r in rows]


async def _newest_first(
    conn: asyncpg.Connection,
    table: str,
    columns: str,
    id_column: str,
    person_columns: tuple[str, ...],
    workspace_id: str,
    person_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of a workspace's log table, newest first, optionally for one person, after a position."""
    of_person = " OR ".join(f"{column} = $2::uuid" for column in person_columns)
    return await conn.fetch(
        f"""SELECT {columns} FROM {table}
            WHERE workspace_id = $1
              AND ($2::uuid IS NULL OR {of_person})
              AND ($3::timestamptz IS NULL OR (created_at, {id_column}) < ($3::timestamptz, $4::uuid))
            ORDER BY created_at DESC, {id_column} DESC LIMIT $5""",
        workspace_id,
        person_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def mark_merges_undone(
    conn: asyncpg.Connection, workspace_id: str, merge_ids: Sequence[str], reason: str
) -> None:
    if merge_ids:
        await conn.execute(
            """UPDATE merges SET undone_at = now(), undo_reason = $3
               WHERE workspace_id = $1 AND merge_id = ANY($2::uuid[]) AND undone_at IS NULL""",
            workspace_id,
            list(merge_ids),
            reason,
        )


async def reassign(
    conn: asyncpg.Connection,
    workspace_id: str,
    owners: dict[str, list[Key]],
    merged_into: dict[str, str],
    merge_counts: dict[str, int],
    rehomed: dict[Key, str],
    created: Sequence[str],
) -> None:
    """Write a recomputed graph: identifiers to their owners (and new homes), persons (re)activated
    or merged, new persons for the pieces a removal cut off."""
    await insert_persons(conn, workspace_id, created)
    keys = [(p, k) for p, ks in owners.items() for k in ks]
    await conn.execute(
        """UPDATE identifiers i SET person_id = x.p, origin_person_id = coalesce(x.h, i.origin_person_id)
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[]) AS x(p, t, v, h)
           WHERE i.workspace_id = $1 AND i.id_type = x.t AND i.id_value = x.v
             AND (i.person_id IS DISTINCT FROM x.p OR x.h IS NOT NULL)""",
        workspace_id,
        [p for p, _ in keys],
        [k[0] for _, k in keys],
        [k[1] for _, k in keys],
        [rehomed.get(k) for _, k in keys],
    )
    await conn.execute(
        """UPDATE persons p SET status = CASE WHEN p.status = 'quarantined' THEN 'quarantined' ELSE 'active' END,
                  merged_into = NULL, merge_count = coalesce(x.c, 0), updated_at = now()
           FROM unnest($2::uuid[], $3::int[]) AS x(p, c)
           WHERE p.workspace_id = $1 AND p.person_id = x.p""",
        workspace_id,
        list(owners),
        [merge_counts.get(p, 0) for p in owners],
    )
    if merged_into:
        await conn.execute(
            """UPDATE persons p SET status = 'merged', merged_into = x.s, updated_at = now()
               FROM unnest($2::uuid[], $3::uuid[]) AS x(p, s)
               WHERE p.workspace_id = $1 AND p.person_id = x.p""",
            workspace_id,
            list(merged_into),
            list(merged_into.values()),
        )


async def release_person(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> None:
    await conn.execute(
        """UPDATE persons SET status = 'active', quarantine_reason = NULL, quarantined_at = NULL, updated_at = now()
           WHERE workspace_id = $1 AND person_id = $2::uuid AND status = 'quarantined'""",
        workspace_id,
        person_id,
    )


async def delete_identifier(conn: asyncpg.Connection, workspace_id: str, key: Key) -> None:
    await conn.execute(
        "DELETE FROM identifiers WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3",
        workspace_id,
        key[0],
        key[1],
    )


async def unblock_identifier(conn: asyncpg.Connection, workspace_id: str, key: Key) -> str | None:
    """Forget a blocked value; its blocked reason, or None when it was not blocked."""
    return await conn.fetchval(
        """DELETE FROM identifiers WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3 AND person_id IS NULL
           RETURNING coalesce(blocked_reason, '')""",
        workspace_id,
        key[0],
        key[1],
    )


async def block_identifier(conn: asyncpg.Connection, workspace_id: str, key: Key, reason: str) -> None:
    await conn.execute(
        """UPDATE identifiers SET person_id = NULL, blocked_reason = $4, anchor_type = NULL, anchor_value = NULL
           WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3""",
        workspace_id,
        key[0],
        key[1],
        reason,
    )


async def insert_removal(
    conn: asyncpg.Connection,
    workspace_id: str,
    removal_id: str,
    person_id: str,
    key: Key,
    sealed: bytes | None,
    blocked: bool,
    reason: str,
) -> None:
    await conn.execute(
        """INSERT INTO removals (workspace_id, removal_id, person_id, id_type, id_value, sealed, blocked, reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        workspace_id,
        removal_id,
        person_id,
        key[0],
        key[1],
        sealed,
        blocked,
        reason,
    )


_CONFLICT_COLUMNS = """conflict_id::text AS conflict_id, kind, id_type, id_value, sealed, person_id::text AS person_id,
    other_person_id::text AS other_person_id, message_id, detail, rule_version, created_at"""


async def list_conflicts(
    conn: asyncpg.Connection,
    workspace_id: str,
    *,
    person_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ConflictRow]:
    rows = await _newest_first(
        conn,
        "conflicts",
        _CONFLICT_COLUMNS,
        "conflict_id",
        ("person_id", "other_person_id"),
        workspace_id,
        person_id,
        after,
        limit,
    )
    return [ConflictRow(key=(r["id_type"], r["id_value"]), **_without(r, "id_type", "id_value")) for r in rows]


def _without(record: Any, *names: str) -> dict[str, Any]:
    return {k: v for k, v in dict(record).items() if k not in names}


# PII conversion of rows written before migration 0002 ----------------------------------------------------


async def plaintext_pii_rows(conn: asyncpg.Connection, types: Sequence[str], limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT workspace_id, id_type, id_value, person_id::text AS person_id FROM identifiers
           WHERE id_type = ANY($1::text[]) AND sealed IS NULL AND id_value NOT LIKE 'h:%'
           ORDER BY workspace_id, id_type, id_value LIMIT $2 FOR UPDATE SKIP LOCKED""",
        list(types),
        limit,
    )


async def convert_pii_row(
    conn: asyncpg.Connection, workspace_id: str, type_: str, old_value: str, key: str | None, sealed: bytes | None
) -> bool:
    """Rewrite one plaintext row to (key, sealed); drop it when invalid (key None) or already held."""
    if key is not None:
        taken = await conn.fetchval(
            "SELECT 1 FROM identifiers WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3",
            workspace_id,
            type_,
            key,
        )
        if not taken:
            await conn.execute(
                """UPDATE identifiers SET id_value = $4, sealed = $5
                   WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3""",
                workspace_id,
                type_,
                old_value,
                key,
                sealed,
            )
            return True
    await conn.execute(
        "DELETE FROM identifiers WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3",
        workspace_id,
        type_,
        old_value,
    )
    return False


# Match suggestions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuggestionRow:
    suggestion_id: str
    person_a: str
    person_b: str
    score: float
    comparisons: list
    state: str
    created_at: datetime
    decided_at: datetime | None
    merge_id: str | None


async def match_profiles(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> dict[str, bytes]:
    if not person_ids:
        return {}
    rows = await conn.fetch(
        """SELECT person_id::text AS p, attributes FROM match_profiles
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
        workspace_id,
        list(person_ids),
    )
    return {r["p"]: r["attributes"] for r in rows}


async def lock_match_profiles(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]
) -> dict[str, bytes]:
    """Row-lock the existing profiles of these persons in person order (one statement); their attributes."""
    if not person_ids:
        return {}
    rows = await conn.fetch(
        """SELECT person_id::text AS p, attributes FROM match_profiles
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
           ORDER BY person_id FOR UPDATE""",
        workspace_id,
        sorted(person_ids),
    )
    return {r["p"]: r["attributes"] for r in rows}


async def update_match_profiles(conn: asyncpg.Connection, workspace_id: str, rows: Sequence[tuple[str, bytes]]) -> None:
    """New attributes for profiles this transaction has locked."""
    if rows:
        await conn.execute(
            """UPDATE match_profiles m SET attributes = x.a, dirty = true, updated_at = now()
               FROM unnest($2::uuid[], $3::bytea[]) AS x(p, a)
               WHERE m.workspace_id = $1 AND m.person_id = x.p""",
            workspace_id,
            [r[0] for r in rows],
            [r[1] for r in rows],
        )


async def insert_match_profiles(conn: asyncpg.Connection, workspace_id: str, rows: Sequence[tuple[str, bytes]]) -> int:
    """First profiles, in person order; returns how many were inserted (fewer: one appeared meanwhile)."""
    if not rows:
        return 0
    rows = sorted(rows)
    result = await conn.execute(
        """INSERT INTO match_profiles (workspace_id, person_id, attributes)
           SELECT $1, p, a FROM unnest($2::uuid[], $3::bytea[]) WITH ORDINALITY AS x(p, a, n)
           ORDER BY n
           ON CONFLICT DO NOTHING""",
        workspace_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
    )
    return int(result.split()[-1])


async def mark_match_dirty(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    if person_ids:
        await conn.execute(
            """UPDATE match_profiles m SET dirty = true
               FROM (SELECT person_id FROM match_profiles WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
                     ORDER BY person_id FOR UPDATE) AS l
               WHERE m.workspace_id = $1 AND m.person_id = l.person_id""",
            workspace_id,
            sorted(person_ids),
        )


async def retire_match_persons(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    """Merged-away persons: no longer candidates, their pending suggestions obsolete."""
    if not person_ids:
        return
    await conn.execute(
        "DELETE FROM match_keys WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])", workspace_id, list(person_ids)
    )
    await obsolete_suggestions(conn, workspace_id, person_ids)


async def obsolete_suggestions(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    if person_ids:
        # Rows locked in id order (one statement): two transactions never wait on each other in a cycle.
        await conn.execute(
            """UPDATE match_suggestions s SET state = 'obsolete', decided_at = now()
               FROM (SELECT suggestion_id FROM match_suggestions
                     WHERE workspace_id = $1 AND state = 'pending'
                       AND (person_a = ANY($2::uuid[]) OR person_b = ANY($2::uuid[]))
                     ORDER BY suggestion_id FOR UPDATE) AS l
               WHERE s.workspace_id = $1 AND s.suggestion_id = l.suggestion_id AND s.state = 'pending'""",
            workspace_id,
            list(person_ids),
        )


async def dirty_workspaces(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT workspace_id FROM match_profiles WHERE dirty ORDER BY 1")
    return [r["workspace_id"] for r in rows]


async def dirty_match_profiles(conn: asyncpg.Connection, workspace_id: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT m.workspace_id, m.person_id::text AS person_id, m.attributes, p.status
           FROM match_profiles m JOIN persons p USING (workspace_id, person_id)
           WHERE m.workspace_id = $1 AND m.dirty ORDER BY m.person_id LIMIT $2 FOR UPDATE OF m SKIP LOCKED""",
        workspace_id,
        limit,
    )


async def replace_match_keys(conn: asyncpg.Connection, workspace_id: str, person_id: str, keys: Sequence[str]) -> None:
    await conn.execute("DELETE FROM match_keys WHERE workspace_id = $1 AND person_id = $2", workspace_id, person_id)
    if keys:
        await conn.execute(
            """INSERT INTO match_keys (workspace_id, block_key, person_id)
               SELECT $1, k, $3 FROM unnest($2::text[]) AS k ON CONFLICT DO NOTHING""",
            workspace_id,
            sorted(set(keys)),
            person_id,
        )


async def block_members(
    conn: asyncpg.Connection, workspace_id: str, keys: Sequence[str], limit: int
) -> dict[str, list[str]]:
    """Persons filed under each key; keys with more than ``limit`` persons come back empty (too common)."""
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT k.block_key, array_agg(k.person_id::text) AS persons
           FROM (SELECT block_key, person_id, count(*) OVER (PARTITION BY block_key) AS n
                 FROM match_keys WHERE workspace_id = $1 AND block_key = ANY($2::text[])) k
           WHERE k.n <= $3 GROUP BY k.block_key""",
        workspace_id,
        list(keys),
        limit,
    )
    return {r["block_key"]: r["persons"] for r in rows}


async def clear_dirty(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    await conn.execute(
        "UPDATE match_profiles SET dirty = false WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])",
        workspace_id,
        list(person_ids),
    )


async def insert_suggestions(
    conn: asyncpg.Connection, workspace_id: str, rows: Sequence[tuple[str, str, str, float, list]]
) -> int:
    """(id, person a, person b, score, comparisons); a pair seen before (any state) is left as it is."""
    if not rows:
        return 0
    result = await conn.execute(
        """INSERT INTO match_suggestions (workspace_id, suggestion_id, person_a, person_b, score, comparisons)
           SELECT $1, i, a, b, s, c::jsonb
           FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::float8[], $6::text[]) AS x(i, a, b, s, c)
           ORDER BY a, b
           ON CONFLICT (workspace_id, person_a, person_b) DO NOTHING""",
        workspace_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [json.dumps(r[4]) for r in rows],
    )
    return int(result.split()[-1])


_SUGGESTION_COLUMNS = """suggestion_id::text AS suggestion_id, person_a::text AS person_a, person_b::text AS person_b,
    score, comparisons, state, created_at, decided_at, merge_id::text AS merge_id"""


async def list_suggestions(
    conn: asyncpg.Connection, workspace_id: str, *, state: str, after: tuple[datetime, str] | None, limit: int
) -> list[SuggestionRow]:
    rows = await conn.fetch(
        f"""SELECT {_SUGGESTION_COLUMNS} FROM match_suggestions
            WHERE workspace_id = $1 AND state = $2
              AND ($3::timestamptz IS NULL OR (created_at, suggestion_id) > ($3::timestamptz, $4::uuid))
            ORDER BY created_at, suggestion_id LIMIT $5""",
        workspace_id,
        state,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [SuggestionRow(**dict(r)) for r in rows]


async def get_suggestion(
    conn: asyncpg.Connection, workspace_id: str, suggestion_id: str, *, for_update: bool = False
) -> SuggestionRow | None:
    row = await conn.fetchrow(
        f"""SELECT {_SUGGESTION_COLUMNS} FROM match_suggestions WHERE workspace_id = $1 AND suggestion_id = $2::uuid
            {"FOR UPDATE" if for_update else ""}""",
        workspace_id,
        suggestion_id,
    )
    return None if row is None else SuggestionRow(**dict(row))


async def decide_suggestion(
    conn: asyncpg.Connection, workspace_id: str, suggestion_id: str, state: str, merge_id: str | None
) -> None:
    await conn.execute(
        """UPDATE match_suggestions SET state = $3, decided_at = now(), merge_id = $4
           WHERE workspace_id = $1 AND suggestion_id = $2::uuid""",
        workspace_id,
        suggestion_id,
        state,
        merge_id,
    )


# Re-sealing under the active PII key ---------------------------------------------------------------


@dataclass(frozen=True)
class SealedColumn:
    """A column of sealed values: its table, the columns that find a row, and the SQL of the
    seal context after ``<workspace>/``."""

    table: str
    column: str
    keys: tuple[str, ...]
    context: str


SEALED_COLUMNS = (
    SealedColumn("identifiers", "sealed", ("id_type", "id_value"), "id_type"),
    SealedColumn("merges", "anchor_sealed", ("merge_id",), "anchor_type"),
    SealedColumn("merges", "bridge_sealed", ("merge_id",), "bridge_type"),
    SealedColumn("conflicts", "sealed", ("conflict_id",), "id_type"),
    SealedColumn("removals", "sealed", ("removal_id",), "id_type"),
    SealedColumn("journal", "identifiers", ("message_id",), "'journal'"),
    SealedColumn("match_profiles", "attributes", ("person_id",), "'match'"),
)


async def sealed_under_other_keys(
    conn: asyncpg.Connection, sealed: SealedColumn, active_key_id: str, limit: int
) -> list[asyncpg.Record]:
    """Rows whose value was sealed under another key than ``active_key_id``, locked (others skipped).

    A sealed value starts with a version byte, the key id's length, and the key id (cdpkit.pii).
    """
    keys = ", ".join(f"{k}::text AS k{n}" for n, k in enumerate(sealed.keys))
    return await conn.fetch(
        f"""SELECT workspace_id, {keys}, workspace_id || '/' || {sealed.context} AS context, {sealed.column} AS sealed
            FROM {sealed.table}
            WHERE {sealed.column} IS NOT NULL
              AND substring({sealed.column} FROM 3 FOR get_byte({sealed.column}, 1)) <> convert_to($1, 'UTF8')
            LIMIT $2 FOR UPDATE SKIP LOCKED""",
        active_key_id,
        limit,
    )


async def replace_sealed(
    conn: asyncpg.Connection, sealed: SealedColumn, rows: Sequence[asyncpg.Record], values: Sequence[bytes]
) -> None:
    matches = " AND ".join(f"t.{k}::text = x.k{n}" for n, k in enumerate(sealed.keys))
    columns = ", ".join(f"${n + 3}::text[]" for n in range(len(sealed.keys)))
    names = ", ".join(f"k{n}" for n in range(len(sealed.keys)))
    await conn.execute(
        f"""UPDATE {sealed.table} t SET {sealed.column} = x.v
            FROM unnest($1::text[], $2::bytea[], {columns}) AS x(w, v, {names})
            WHERE t.workspace_id = x.w AND {matches}""",
        [r["workspace_id"] for r in rows],
        list(values),
        *[[r[f"k{n}"] for r in rows] for n in range(len(sealed.keys))],
    )
