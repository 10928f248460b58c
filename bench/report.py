"""What every benchmark prints: the machine with its load, then a table of measures."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import grpc


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: figures on a shared machine mean little without them."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}"


def print_rows(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


async def serving(port: int, process: subprocess.Popen, timeout: float = 90.0) -> None:
    """Wait until the gRPC server ``process`` started answers on ``port``; fail if it exits or
    does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 1)
            return
        except (TimeoutError, grpc.aio.AioRpcError):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the service on port {port} did not start") from None


def setting(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` from the command line (an argparse ``type``)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def settings(text: str) -> dict[str, str]:
    """``NAME=VALUE[,NAME=VALUE...]`` from the command line (an argparse ``type``)."""
    return dict(setting(part) for part in text.split(","))


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (Linux /proc): what a measure costs, which the
    machine's load moves much less than wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of the PostgreSQL server: its processes' and those of its children that
    exited (autovacuum workers...)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid, parent = int(entry), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif parent == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / tick
