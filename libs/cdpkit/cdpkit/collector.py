"""Python's cyclic garbage collector, tuned for a long-lived service, and its pauses measured.

Services make many short-lived containers per message and keep caches of hundreds of thousands
of objects (rules, identifier hashes, opened PII). Under the default thresholds (700, 10, 10) the
collector walked those caches over and over: 7-30 % of profile's consumer CPU, and a full
collection stops the event loop for as long as the walk takes, which every message in flight
waits out (a latency tail). Cycles are rare here (reference counting frees nearly everything),
so it runs about 70x less often, and what start-up made (modules, descriptors, compiled
protos) is frozen out of its walks.

Every collection's pause is observed in ``cdp_gc_pause_seconds{generation}``.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import Histogram

THRESHOLDS = (50_000, 20, 100)

PAUSE_SECONDS = Histogram(
    "cdp_gc_pause_seconds",
    "Time the event loop stood still for one cyclic garbage collection",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
_PAUSES = [PAUSE_SECONDS.labels(str(generation)) for generation in range(3)]
_started = 0.0


def _observe(phase: str, info: dict[str, int]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
    else:
        _PAUSES[info["generation"]].observe(time.perf_counter() - _started)


def tune() -> None:
    """Freeze what exists now (call it once start-up has imported everything), raise the
    thresholds and observe the pauses. Idempotent."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    if _observe not in gc.callbacks:
        gc.callbacks.append(_observe)
