"""Bulk import: customers, orders with line items, products and stores from CSV, JSONL or the
CDNOW format, into the profile exactly as live events would build it.

    python -m cdp_profile import --workspace demo --kind orders --format cdnow CDNOW_master.txt

The file is read in chunks of ``chunk`` lines. Per chunk:

1. parse and validate (``import_formats``); a bad row is kept aside with its reason;
2. resolve customer ids (and emails, phones) to persons through identity's ResolveIdentities
   (batches of 500; message ids derived from the import and the customer or line, so a repeated
   call is a replay that changes nothing);
3. one transaction: COPY the rows into ``import_rows``, store the rejections, move the checkpoint
   (``imports.staged_through``, the last line covered);
4. apply the staged rows through the profile's own use cases, in one transaction with their
   deletion from ``import_rows``: an order is an ``Order Completed`` event, a customer an
   identify call (message id ``import:<import>:<line>``, stored once), a product or store a
   BatchUpsert. Every derived value, timer, tag, points entry and ProfileChanged is what the live
   path would make of the same events.

Interrupted anywhere, a run with the same file resumes: staged rows are applied first, reading
goes on after the checkpoint, and events already stored are not stored twice (their message
ids). A finished import run again changes nothing. The import id is the kind and the file's
SHA-256 unless given; the reject file (JSON lines: line, reason, row) is written from the
database at the end, so an interrupted run neither loses nor repeats a rejection.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import asyncpg
import orjson
import structlog
from google.protobuf import struct_pb2

from cdp_profile import import_formats as formats
from cdp_profile import import_repository as repo
from cdp_profile.consumers import describe
from cdp_profile.identity_client import IdentityResolver
from cdp_profile.import_formats import Catalogue, Customer, Order, Record
from cdp_profile.rules import WorkspaceSettings
from cdp_profile.service import Incoming, ProfileService
from cdp_profile.structs import to_struct
from cdpkit.clock import Clock
from cdpkit.errors import FailedPrecondition, InvalidArgument
from cdpkit.pii import PiiVault

log = structlog.get_logger(__name__)

MAX_CHUNK = 10_000
IMPORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_CUSTOMER_CACHE = 500_000


@dataclass(frozen=True)
class Summary:
    import_id: str
    # "done", or "already done" (a finished import run again: nothing changed)
    outcome: str
    lines: int
    applied: int
    rejected: int
    seconds: float
    reject_file: Path | None


class Progress:
    """A progress bar on a terminal (stderr), a line every few seconds otherwise."""

    def __init__(self, total_bytes: int, stream: IO[str] | None = None, *, every: float = 5.0) -> None:
        self._total = max(total_bytes, 1)
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._every = every if not self._tty else 0.2
        self._last = 0.0
        self._started = time.monotonic()

    def update(self, done_bytes: int, lines: int, applied: int, rejected: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < self._every:
            return
        self._last = now
        share = min(done_bytes / self._total, 1.0)
        rate = applied / max(now - self._started, 1e-9)
        text = f"{share:6.1%} {lines:,} lines, {applied:,} applied, {rejected:,} rejected, {rate:,.0f} rows/s"
        if self._tty:
            bar = "#" * int(share * 30)
            self._stream.write(f"\r[{bar:<30}] {text}" + ("\n" if final else ""))
        else:
            self._stream.write(f"import: {text}\n")
        self._stream.flush()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _CountingLines:
    """Raw lines of a file, counting the bytes read (progress)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        with self._path.open("rb") as handle:
            for raw in handle:
                self.bytes += len(raw)
                yield raw


class Importer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        service: ProfileService,
        vault: PiiVault,
        resolver: IdentityResolver,
        clock: Clock,
        *,
        chunk: int = 2000,
    ) -> None:
        if not 1 <= chunk <= MAX_CHUNK:
            raise InvalidArgument("chunk", f"must be between 1 and {MAX_CHUNK}")
        self._pool = pool
        self._service = service
        self._vault = vault
        self._resolver = resolver
        self._clock = clock
        self._chunk = chunk
        self._persons: dict[str, str] = {}

    async def run(
        self,
        *,
        workspace_id: str,
        kind: str,
        fmt: str,
        path: Path,
        import_id: str = "",
        reject_path: Path | None = None,
        id_type: str = "user_id",
        source: str = "import",
        progress: Progress | None = None,
    ) -> Summary:
        if kind not in formats.KINDS:
            raise InvalidArgument("kind", f"must be one of {', '.join(formats.KINDS)}")
        if fmt not in formats.FORMATS or (fmt == "cdnow" and kind != "orders"):
            raise InvalidArgument("format", "csv, jsonl, or cdnow (orders only)")
        started = time.monotonic()
        digest = file_digest(path)
        import_id = import_id or f"{kind}-{digest[:16]}"
        if not IMPORT_ID.match(import_id):
            raise InvalidArgument("import_id", "1-64 letters, digits, - and _, starting with a letter or digit")
        async with self._pool.acquire() as conn:
            settings = await self._service.settings_of(conn, workspace_id)
            state = await repo.start(conn, workspace_id, import_id, kind, fmt, path.name, digest, self._clock.now())
        if state.digest != digest or state.kind != kind or state.format != fmt:
            raise FailedPrecondition(f"import {import_id} was started with another file, kind or format")
        outcome = "already done" if state.state == "done" else "done"
        if state.state != "done":
            run = _Run(self, workspace_id, import_id, kind, settings, state, id_type, source)
            options = formats.Options(currency=settings.currency, zone=settings.zone, id_type=id_type)
            await run.apply_staged()  # what an interrupted run staged and did not apply
            lines = _CountingLines(path)
            chunk: list[Record] = []
            # A chunk is read, resolved and staged while the previous one is applied (identity and
            # profile work at once); one apply at a time, in line order.
            applying: asyncio.Task | None = None
            try:
                for record in formats.records(kind, fmt, formats.decode_lines(lines), options):
                    if record.last_line <= state.staged_through:
                        continue  # staged (or rejected) by an earlier run
                    chunk.append(record)
                    if len(chunk) >= self._chunk:
                        await run.stage(chunk)
                        chunk = []
                        if applying is not None:
                            await applying
                        applying = asyncio.create_task(run.apply_staged())
                        if progress:
                            progress.update(lines.bytes, run.through, run.applied, run.rejected)
                if chunk:
                    await run.stage(chunk)
                if applying is not None:
                    await applying
                await run.apply_staged()
            finally:
                if applying is not None and not applying.done():
                    applying.cancel()
            async with self._pool.acquire() as conn:
                await repo.finish(conn, workspace_id, import_id, self._clock.now())
            if progress:
                progress.update(lines.bytes, run.through, run.applied, run.rejected, final=True)
        async with self._pool.acquire() as conn:
            final = await repo.get(conn, workspace_id, import_id)
            rejections = await repo.rejects(conn, workspace_id, import_id)
        assert final is not None
        if reject_path is not None:
            opened = [
                (
                    r["line"],
                    r["reason"],
                    self._vault.open(r["raw"], context=_raw_context(workspace_id, import_id, r["line"])),
                )
                for r in rejections
            ]
            _write_rejects(reject_path, opened)
        summary = Summary(
            import_id=import_id,
            outcome=outcome,
            lines=final.staged_through,
            applied=final.rows_applied,
            rejected=final.rows_rejected,
            seconds=time.monotonic() - started,
            reject_file=reject_path if rejections else None,
        )
        log.info("import finished", workspace=workspace_id, import_id=import_id, outcome=outcome,
                 lines=summary.lines, applied=summary.applied, rejected=summary.rejected)  # fmt: skip
        return summary


def _unresolved(resolved) -> str:
    return "identity: " + ("; ".join(resolved.ignored) or "no usable identifier")


def _write_rejects(path: Path, rejections: list[tuple[int, str, str]]) -> None:
    """JSON lines {"line", "reason", "row"}; an earlier reject file of the same name is replaced."""
    if not rejections and not path.exists():
        return
    with path.open("wb") as handle:
        for line, reason, raw in rejections:
            handle.write(orjson.dumps({"line": line, "reason": reason, "row": raw}) + b"\n")


def _raw_context(workspace_id: str, import_id: str, line: int) -> str:
    return f"{workspace_id}/import/{import_id}/{line}"


class _Run:
    """One run of one import: stages chunks and applies staged rows."""

    def __init__(
        self,
        importer: Importer,
        workspace_id: str,
        import_id: str,
        kind: str,
        settings: WorkspaceSettings,
        state: repo.ImportRow,
        id_type: str,
        source: str,
    ) -> None:
        self.importer = importer
        self.workspace_id = workspace_id
        self.import_id = import_id
        self.kind = kind
        self.settings = settings
        self.id_type = id_type
        self.source = source
        self.start_time: datetime = state.start_time
        self.through = state.staged_through
        self.applied = state.rows_applied
        self.rejected = state.rows_rejected

    def _message_id(self, suffix: str) -> str:
        message_id = f"import:{self.import_id}:{suffix}"
        if len(message_id) > 200:  # identity's limit: long customer ids are hashed
            message_id = f"import:{self.import_id}:h:{hashlib.blake2b(suffix.encode(), digest_size=16).hexdigest()}"
        return message_id

    async def _persons(self, records: list[Record]) -> dict[int, tuple[str, str]]:
        """line -> (person id, or "" with the reason identity gave)."""
        importer = self.importer
        found: dict[int, tuple[str, str]] = {}
        if self.kind == "orders":
            wanted = sorted({r.value.customer_id for r in records} - set(importer._persons))
            sets = [(((self.id_type, c),), self._message_id(f"c:{c}")) for c in wanted]
            for customer_id, resolved in zip(
                wanted, await importer._resolver.resolve(self.workspace_id, sets), strict=True
            ):
                if resolved.person_id:
                    if len(importer._persons) >= _CUSTOMER_CACHE:
                        importer._persons.clear()
                    importer._persons[customer_id] = resolved.person_id
                else:
                    for r in records:
                        if r.value.customer_id == customer_id:
                            found[r.line] = ("", _unresolved(resolved))
            for r in records:
                if r.line not in found:
                    found[r.line] = (importer._persons[r.value.customer_id], "")
        elif self.kind == "customers":
            sets = [(r.value.identifiers, self._message_id(str(r.line))) for r in records]
            for r, resolved in zip(records, await importer._resolver.resolve(self.workspace_id, sets), strict=True):
                found[r.line] = (resolved.person_id, "" if resolved.person_id else _unresolved(resolved))
        return found

    async def stage(self, chunk: list[Record]) -> None:
        vault = self.importer._vault
        good = [r for r in chunk if not r.rejected]
        persons = await self._persons(good) if good else {}
        rows: list[tuple[int, str | None, bytes, bool]] = []
        rejects: list[tuple[int, str, bytes]] = []
        for record in chunk:
            reason = record.reason
            person = ""
            if not record.rejected and self.kind in ("orders", "customers"):
                person, reason = persons[record.line]
            if reason:
                sealed = vault.seal(record.raw, context=_raw_context(self.workspace_id, self.import_id, record.line))
                rejects.append((record.line, reason[:1000], sealed))
                continue
            payload, sealed_payload = self._payload(record)
            rows.append((record.line, person or None, payload, sealed_payload))
        through = max(r.last_line for r in chunk)
        async with self.importer._pool.acquire() as conn, conn.transaction():
            await repo.stage(conn, self.workspace_id, self.import_id, rows, rejects, through)
        self.through = through
        self.rejected += len(rejects)

    def _payload(self, record: Record) -> tuple[bytes, bool]:
        value = record.value
        if isinstance(value, Order):
            data = {
                "t": value.order_time.isoformat(),
                "p": value.properties(),
                "ids": [[self.id_type, value.customer_id]],
            }
            return orjson.dumps(data), False
        if isinstance(value, Customer):
            data = {
                "t": value.as_of.isoformat() if value.as_of else None,
                "traits": value.traits,
                "ids": [list(i) for i in value.identifiers],
            }
            context = _raw_context(self.workspace_id, self.import_id, record.line)
            return self.importer._vault.seal_bytes(orjson.dumps(data), context=context), True
        assert isinstance(value, Catalogue)
        return orjson.dumps(value.row), False

    async def apply_staged(self) -> None:
        importer = self.importer
        while True:
            async with importer._pool.acquire() as conn:
                rows = await repo.staged(conn, self.workspace_id, self.import_id, importer._chunk)
            if not rows:
                return
            lines = [r["line"] for r in rows]

            async def done(conn: asyncpg.Connection, lines: list[int] = lines) -> None:
                await repo.applied(conn, self.workspace_id, self.import_id, lines)

            if self.kind in ("products", "stores"):
                objects = [orjson.loads(r["payload"]) for r in rows]
                kind = "product" if self.kind == "products" else "store"
                async with importer._pool.acquire() as conn, conn.transaction():
                    # One upsert per object id: the last row of an id in the chunk wins.
                    key = "product_id" if kind == "product" else "store_id"
                    latest = list({o[key]: o for o in objects}.values())
                    await importer._service.upsert_objects_in(conn, kind, self.workspace_id, latest)
                    await done(conn)
            else:
                await importer._service.record_events([self._incoming(r) for r in rows], also=done)
            self.applied += len(rows)

    def _incoming(self, row: asyncpg.Record) -> Incoming:
        line = row["line"]
        now = self.importer._clock.now()
        payload = row["payload"]
        if row["sealed"]:
            context = _raw_context(self.workspace_id, self.import_id, line)
            payload = self.importer._vault.open_bytes(payload, context=context)
        data = orjson.loads(payload)
        context = to_struct({"source": self.source})
        if self.kind == "orders":
            properties = to_struct(data["p"])
            channel, store_id, staff_id, source = describe("track", properties, context)
            return Incoming(
                workspace_id=self.workspace_id,
                message_id=f"import:{self.import_id}:{line}",
                person_id=row["person_id"],
                type="track",
                event="Order Completed",
                properties=properties,
                context=context,
                event_time=datetime.fromisoformat(data["t"]),
                received_at=now,
                identifiers=[tuple(i) for i in data["ids"]],
                channel=channel,
                store_id=store_id,
                staff_id=staff_id,
                source=source,
            )
        return Incoming(
            workspace_id=self.workspace_id,
            message_id=f"import:{self.import_id}:{line}",
            person_id=row["person_id"],
            type="identify",
            event="",
            properties=struct_pb2.Struct(),
            context=context,
            event_time=datetime.fromisoformat(data["t"]) if data["t"] else self.start_time,
            received_at=now,
            traits={"set": data["traits"]},
            identifiers=[tuple(i) for i in data["ids"]],
            source=self.source,
        )
