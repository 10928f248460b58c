"""``python -m cdp_gateway admin ...``: workspaces and keys from the command line.

The same use cases are served over HTTP/gRPC by ``cdp.gateway.v1.ApiKeyService`` (admin scope);
these commands bootstrap a workspace and its first admin key, and serve ``cdp up``. A new key is
printed once and never stored in clear.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cdp_gateway.auth import KeyStore
from cdp_gateway.config import SCHEMA, Settings
from cdp_gateway.keys import SECRET, WRITE
from cdpkit import db
from cdpkit.errors import AlreadyExists


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="admin_command", required=True)
    workspace = commands.add_parser("create-workspace", help="create a workspace")
    workspace.add_argument("workspace_id")
    workspace.add_argument("--display-name", default="")
    key = commands.add_parser("create-key", help="create a key and print it once")
    key.add_argument("workspace_id")
    key.add_argument("--kind", choices=[WRITE, SECRET], required=True)
    key.add_argument("--scopes", default="", help="comma-separated: read,write,admin (secret keys)")
    key.add_argument("--rate-limit", type=int, default=0, help="events/s (write) or requests/s (secret); 0: default")
    key.add_argument("--display-name", default="")
    dev = commands.add_parser(
        "dev-workspace", help="ensure a workspace with a write key and a read/write secret key in files (cdp up)"
    )
    dev.add_argument("workspace_id")
    dev.add_argument("--write-key-file", type=Path, required=True)
    dev.add_argument("--secret-key-file", type=Path, required=True)


def _write_secret(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")


async def run(settings: Settings, args: argparse.Namespace) -> None:
    pool = await db.create_pool(settings.database_url.get(), SCHEMA, application_name="cdp-gateway-admin", max_size=2)
    keys = KeyStore(pool)
    try:
        if args.admin_command == "create-workspace":
            await keys.create_workspace(args.workspace_id, args.display_name)
            print(f"workspace {args.workspace_id} created")
        elif args.admin_command == "create-key":
            scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
            key_id, key = await keys.create_key(
                args.workspace_id, args.kind, scopes, rate_limit=args.rate_limit, display_name=args.display_name
            )
            print(f"{key_id} {key}")
        elif args.admin_command == "dev-workspace":
            try:
                await keys.create_workspace(args.workspace_id, "Development")
            except AlreadyExists:
                pass
            for path, kind, scopes in (
                (args.write_key_file, WRITE, frozenset()),
                (args.secret_key_file, SECRET, frozenset({"read", "write"})),
            ):
                existing = path.read_text().strip() if path.exists() else ""
                if existing and await keys.key_is_active(existing, args.workspace_id):
                    continue
                _key_id, key = await keys.create_key(args.workspace_id, kind, scopes)
                _write_secret(path, key)
            print(f"workspace {args.workspace_id}: keys in {args.write_key_file} and {args.secret_key_file}")
    finally:
        await pool.close()
