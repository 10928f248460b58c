"""cdpkit.collector: pauses observed, thresholds raised, start-up frozen."""

from __future__ import annotations

import gc

from cdpkit import collector


def test_watch_reports_each_collection_with_its_generation():
    pauses: list[tuple[int, float]] = []
    callback = collector.watch(lambda generation, seconds: pauses.append((generation, seconds)))
    try:
        gc.collect(1)
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    assert [generation for generation, _ in pauses] == [1, 2]
    assert all(seconds >= 0 for _, seconds in pauses)


def test_tune_raises_thresholds_freezes_and_observes_once():
    thresholds = gc.get_threshold()
    try:
        collector.tune()
        collector.tune()  # idempotent: one observer
        assert gc.get_threshold() == collector.THRESHOLDS
        assert gc.get_freeze_count() > 0
        before = collector.PAUSE_SECONDS.labels("2")._sum.get()
        count = sum(1 for c in gc.callbacks if c in collector._watching)
        assert count == 1
        gc.collect()
        assert collector.PAUSE_SECONDS.labels("2")._sum.get() > before
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
