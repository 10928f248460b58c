"""python -m cdp_gateway [serve|migrate|config|admin ...]"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from cdp_gateway import admin
from cdp_gateway.bootstrap import bootstrap
from cdp_gateway.config import SCHEMA, Settings
from cdpkit.cli import ExtraCommand, service_main

__all__ = ["MIGRATIONS", "SCHEMA", "Settings", "bootstrap", "main"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _use_uvloop() -> None:
    """The gateway's loop is uvloop when installed (CDP_GATEWAY_UVLOOP=false turns it off)."""
    if os.environ.get("CDP_GATEWAY_UVLOOP", "true").lower() in ("0", "false", "no"):
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main() -> int:
    _use_uvloop()
    return service_main(
        service="gateway",
        settings_class=Settings,
        schema=SCHEMA,
        migrations=MIGRATIONS,
        bootstrap=bootstrap,
        extra_commands={"admin": ExtraCommand("manage workspaces and keys", admin.add_arguments, admin.run)},
    )


if __name__ == "__main__":
    sys.exit(main())
