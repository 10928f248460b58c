"""What every benchmark prints: the machine with its load, then a table of measures."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence


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
