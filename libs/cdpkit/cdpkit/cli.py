"""The command line every service shares: ``python -m cdp_<service> [serve|migrate|config]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from cdpkit import logs
from cdpkit.config import CommonSettings, ConfigError, describe, load, redact_url
from cdpkit.migrate import migrate
from cdpkit.runtime import ServiceRuntime


def service_main(
    *,
    service: str,
    settings_class: type[CommonSettings],
    schema: str,
    migrations: Path,
    bootstrap: Callable[[Any], Awaitable[ServiceRuntime]],
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m cdp_{service}", description=f"CDP {service} service")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate", "config"],
        help="serve (default): run the service; migrate: apply migrations and exit; config: list settings",
    )
    args = parser.parse_args(argv)
    if args.command == "config":
        for name, default, help_text in describe(settings_class):
            print(f"{name:40} {default:28} {help_text}")
        return 0
    try:
        settings = load(settings_class)
    except ConfigError as exc:
        print(f"cdp-{service}: {exc}", file=sys.stderr)
        return 2
    logs.configure(service, level=settings.log_level, fmt=settings.log_format)
    log = structlog.get_logger("cdpkit.cli")
    log.info("configuration loaded", database=redact_url(settings.database_url.get()), nats=settings.nats_url)

    async def apply_migrations() -> None:
        applied = await migrate(settings.database_url.get(), schema, migrations)
        log.info("migrations up to date", schema=schema, applied_now=applied)

    async def serve() -> None:
        if settings.migrate_on_start:
            await apply_migrations()
        runtime = await bootstrap(settings)
        await runtime.run_until_signal()

    try:
        asyncio.run(apply_migrations() if args.command == "migrate" else serve())
    except KeyboardInterrupt:
        pass
    return 0
