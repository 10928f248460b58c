"""python -m cdp_profile [serve|migrate|config|import ...]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cdp_profile.bootstrap import bootstrap, open_importer
from cdp_profile.config import SCHEMA, Settings
from cdp_profile.import_formats import FORMATS, KINDS
from cdp_profile.importer import Progress
from cdpkit.cli import ExtraCommand, service_main

__all__ = ["MIGRATIONS", "SCHEMA", "Settings", "bootstrap", "main"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the CSV, JSONL or CDNOW file")
    parser.add_argument("--workspace", required=True, help="workspace id")
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--format", dest="fmt", choices=FORMATS, help="default: from the file name (.csv, .jsonl)")
    parser.add_argument("--import-id", default="", help="default: the kind and the file's SHA-256 (re-runs resume)")
    parser.add_argument("--reject-file", type=Path, help="default: FILE.rejects.jsonl")
    parser.add_argument("--id-type", default="user_id", help="identifier type of customer ids (default user_id)")
    parser.add_argument("--source", default="import", help="source of the traits (trait priority), default import")
    parser.add_argument("--chunk", type=int, default=2000, help="lines per transaction (1-10000)")
    parser.add_argument("--identity", default="", help="identity service host:port (CDP_PROFILE_IDENTITY_TARGET)")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")


def _plan(args: argparse.Namespace) -> tuple[str, Path, int]:
    """(format, reject file, size) of the file to import, or exit with the reason."""
    path: Path = args.file
    if not path.is_file():
        raise SystemExit(f"cdp-profile import: {path} is not a file")
    fmt = args.fmt or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(path.suffix.lower())
    if fmt is None:
        raise SystemExit("cdp-profile import: say --format (csv, jsonl or cdnow)")
    return fmt, args.reject_file or path.with_name(path.name + ".rejects.jsonl"), path.stat().st_size


async def _import(settings: Settings, args: argparse.Namespace) -> None:
    fmt, reject_path, size = _plan(args)
    path: Path = args.file
    progress = None if args.no_progress else Progress(size)
    async with open_importer(settings, identity_target=args.identity, chunk=args.chunk) as importer:
        summary = await importer.run(
            workspace_id=args.workspace,
            kind=args.kind,
            fmt=fmt,
            path=path,
            import_id=args.import_id,
            reject_path=reject_path,
            id_type=args.id_type,
            source=args.source,
            progress=progress,
        )
    print(
        f"import {summary.import_id}: {summary.outcome}; {summary.lines:,} lines, {summary.applied:,} applied, "
        f"{summary.rejected:,} rejected"
        + (f" (see {summary.reject_file})" if summary.reject_file else "")
        + f"; {summary.seconds:.1f} s"
    )


def main() -> int:
    return service_main(
        service="profile",
        settings_class=Settings,
        schema=SCHEMA,
        migrations=MIGRATIONS,
        bootstrap=bootstrap,
        extra_commands={
            "import": ExtraCommand(
                "bulk-import customers, orders, products or stores (CSV, JSONL, CDNOW)", _import_arguments, _import
            )
        },
    )


if __name__ == "__main__":
    sys.exit(main())
