"""python -m bench [name ...]: run the benchmarks (all by default) and print their tables."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = (
    "slice",
    "gateway",
    "identity",
    "identity_match",
    "analytics",
    "profile",
    "segment",
    "segment_pipeline",
    "campaign",
    "kit",
)


def main() -> int:
    # Options after the names (--events 5000) are read by the benchmarks themselves.
    names = [arg for arg in sys.argv[1:] if arg in BENCHMARKS]
    for name in names or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
