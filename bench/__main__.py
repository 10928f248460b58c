"""python -m bench [name ...]: run the benchmarks (all by default) and print their tables."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("slice", "analytics")


def main() -> int:
    for name in sys.argv[1:] or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
