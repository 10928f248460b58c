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
from collections.abc import Callable

from prometheus_client import Histogram

THRESHOLDS = (50_000, 20, 100)

PAUSE_SECONDS = Histogram(
    "cdp_gc_pause_seconds",
    "Time the event loop stood still for one cyclic garbage collection",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
_PAUSES = [PAUSE_SECONDS.labels(str(generation)) for generation in range(3)]


def watch(on_pause: Callable[[int, float], None]) -> Callable[[str, dict], None]:
    """Call ``on_pause(generation, seconds)`` after every collection; returns the callback
    registered in ``gc.callbacks`` (remove it to stop watching)."""
    started = 0.0

    def observe(phase: str, info: dict) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            on_pause(info["generation"], time.perf_counter() - started)

    gc.callbacks.append(observe)
    return observe


def freeze() -> None:
    """Take every object alive now out of the collector's walks (what start-up made)."""
    gc.collect()
    gc.freeze()


_watching: list[Callable[[str, dict], None]] = []


def tune() -> None:
    """Freeze what exists now (call it once start-up has imported everything), raise the
    thresholds and observe the pauses. Idempotent."""
    freeze()
    gc.set_threshold(*THRESHOLDS)
    if not _watching:
        _watching.append(watch(lambda generation, seconds: _PAUSES[generation].observe(seconds)))
