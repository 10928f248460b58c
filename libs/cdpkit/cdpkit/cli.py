"""The command line every service shares: ``python -m cdp_<service> [serve|migrate|config|...]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cdpkit import collector, logs
from cdpkit.config import CommonSettings, ConfigError, describe, load, redact_url
from cdpkit.errors import DomainError
from cdpkit.migrate import migrate, pending
from cdpkit.runtime import ServiceRuntime


@dataclass(frozen=True)
class ExtraCommand:
    """A service-specific command: its help, its arguments, and what it runs (after migrations)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any, argparse.Namespace], Awaitable[None]]


def service_main(
    *,
    service: str,
    settings_class: type[CommonSettings],
    schema: str,
    migrations: Path,
    bootstrap: Callable[[Any], Awaitable[ServiceRuntime]],
    argv: list[str] | None = None,
    extra_commands: dict[str, ExtraCommand] | None = None,
) -> int:
    extra_commands = extra_commands or {}
    parser = argparse.ArgumentParser(prog=f"python -m cdp_{service}", description=f"CDP {service} service")
    commands = parser.add_subparsers(dest="command", metavar="{serve,migrate,config,...}")
    commands.add_parser("serve", help="run the service (the default)")
    migrate_parser = commands.add_parser("migrate", help="apply pending migrations and exit")
    migrate_parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="apply nothing: wait until another process (the migration Job) has applied every migration "
        "this code ships; exit 3 if it has not within SECONDS (an init container's check)",
    )
    commands.add_parser("config", help="list the environment variables this service reads")
    for name, extra in extra_commands.items():
        extra.add_arguments(commands.add_parser(name, help=extra.help))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command or "serve"
    if command == "config":
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

    async def apply_migrations() -> None:
        applied = await migrate(settings.database_url.get(), schema, migrations)
        if applied:
            log.info("migrations applied", schema=schema, versions=applied)

    async def serve() -> None:
        log.info("starting", database=redact_url(settings.database_url.get()), nats=settings.nats_url)
        if settings.migrate_on_start:
            await apply_migrations()
        runtime = await bootstrap(settings)
        collector.tune()  # after start-up made its long-lived objects
        await runtime.run_until_signal()

    async def extra() -> None:
        # Like serve: where a Job migrates (CDP_MIGRATE_ON_START=false) the app role runs admin
        # commands, and it may not change the schema.
        if settings.migrate_on_start:
            await apply_migrations()
        collector.tune()
        await extra_commands[command].run(settings, args)

    outcome = {"code": 0}

    async def wait_for_migrations() -> None:
        deadline = time.monotonic() + args.wait
        while missing := await pending(settings.database_url.get(), schema, migrations):
            if time.monotonic() >= deadline:
                log.error("migrations still pending", schema=schema, versions=missing)
                outcome["code"] = 3
                return
            log.info("waiting for migrations", schema=schema, versions=missing)
            await asyncio.sleep(2)
        log.info("schema is current", schema=schema)

    if command == "migrate" and args.wait is not None:
        main = wait_for_migrations
    else:
        main = {"serve": serve, "migrate": apply_migrations}.get(command, extra)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except DomainError as exc:
        print(f"cdp-{service}: {exc.message}", file=sys.stderr)
        return 1
    return outcome["code"]
