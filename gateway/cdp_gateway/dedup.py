"""messageId de-duplication at the gateway: a short-lived seen-set per replica.

Why here and why like this. JetStream already drops a retried *batch*: its chunks carry
``Nats-Msg-Id`` = hash of the message ids, identical on a retry, within the stream's 10-minute
window, whichever replica gets it. What that misses is a message re-sent inside a *different*
batch (a mobile SDK re-queues failed messages together with new ones), or twice in one batch.
This set catches those at the door, cheaply: one dict lookup per event, no network.

A shared store (JetStream KV, Postgres) would catch the cross-replica case too, but costs a
round trip per message id (KV has no multi-get): at 17,000 events/s that is more load than the
event publishing itself. Duplicates that still get through (another replica, after a restart,
past the window) are dropped downstream, where the profile service stores an event at most once
per (workspace, messageId). The set is therefore a filter, not the guarantee.

Ids are remembered only after JetStream acknowledged them: a failed publish must stay
retryable. Two concurrent requests carrying the same new id may both pass (rare; downstream
de-duplication covers it). The set is bounded in age (``ttl``) and size (``max_entries``,
oldest dropped first); at high rates the size bounds the window: 250,000 ids at 17,000
events/s hold about 15 s, enough for the immediate retries that cause most duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from cdp.events.v1 import events_pb2


class SeenMessages:
    def __init__(
        self, *, ttl: float = 600.0, max_entries: int = 250_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        # (workspace \0 message id) -> expiry; insertion order is expiry order (one ttl for all).
        self._seen: dict[str, float] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._seen)

    def fresh(self, events: Sequence[events_pb2.RawEvent]) -> list[events_pb2.RawEvent]:
        """``events`` without those seen recently and without repeats inside ``events``."""
        if self._max <= 0:
            return list(events)
        now = self._clock()
        seen = self._seen
        keep, in_request = [], set()
        for event in events:
            key = f"{event.workspace_id}\0{event.message_id}"
            expiry = seen.get(key)
            if (expiry is not None and expiry > now) or key in in_request:
                continue
            in_request.add(key)
            keep.append(event)
        self.dropped += len(events) - len(keep)
        return keep

    def remember(self, events: Sequence[events_pb2.RawEvent]) -> None:
        """Record ids JetStream has stored."""
        if self._max <= 0:
            return
        now = self._clock()
        seen = self._seen
        expiry = now + self._ttl
        for event in events:
            key = f"{event.workspace_id}\0{event.message_id}"
            seen.pop(key, None)  # re-insert at the end: keeps insertion order = expiry order
            seen[key] = expiry
        while seen:
            oldest = next(iter(seen))
            if len(seen) > self._max or seen[oldest] <= now:
                del seen[oldest]
            else:
                break
