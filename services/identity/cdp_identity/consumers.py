"""Raw events in, resolved events out.

Each fetched batch of ``RawEventBatch`` messages is resolved in one transaction; then, per
input message, the resolved events are published to ``{prefix}.resolved.{partition of the
person}`` with ``Nats-Msg-Id`` = ``{input msg id}:{partition}``, and only then acked. A crash
anywhere replays the batch: resolution is idempotent (the same identifiers resolve to the same
person) and the publish is de-duplicated by JetStream and, downstream, by message id.

An event that resolves to nobody (no usable identifier: only junk, invalid, blocked or removed
values) cannot become a ResolvedEvent (every consumer files events under a person). It goes to
the dead-letter subject ``{prefix}.dlq.identity-raw`` instead, alone in a ``RawEventBatch``,
with the reason (types and reasons, never values) in ``Cdp-Dlq-Reason``; it is journaled, so a
replay does not dead-letter it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter

from cdp.events.v1 import events_pb2
from cdp_identity.matching import extract as extract_attributes
from cdp_identity.rules import BUILTIN_NAMES, collect_identifiers
from cdp_identity.service import IdentityService, ResolveItem
from cdpkit.bus import RAW, RESOLVED, BusNames
from cdpkit.consumer import ConsumerSpec, PermanentError

log = structlog.get_logger(__name__)

IGNORED = Counter("cdp_identity_identifiers_ignored_total", "Blocked or invalid identifier values ignored", ["type"])
UNRESOLVED = Counter(
    "cdp_identity_events_unresolved_total", "Raw events without a usable identifier, dead-lettered with the reason"
)


CONSUMER = "identity-raw"


def raw_events_consumer(batch_size: int) -> ConsumerSpec:
    # Several partitions on one replica: their small batches resolved in one transaction.
    return ConsumerSpec(durable=CONSUMER, stream=RAW, batch_size=batch_size, coalesce=True)


def _traits(struct: events_pb2.RawEvent) -> tuple[dict, dict]:
    traits = json_format.MessageToDict(struct.traits) if struct.HasField("traits") else {}
    context = json_format.MessageToDict(struct.context) if struct.HasField("context") else {}
    return traits, context


class RawEventsHandler:
    def __init__(self, service: IdentityService, js: JetStreamContext, names: BusNames) -> None:
        self._service = service
        self._js = js
        self._names = names

    async def __call__(self, messages: Sequence[Msg]) -> None:
        batches: list[tuple[Msg, events_pb2.RawEventBatch]] = []
        for message in messages:
            try:
                batches.append((message, events_pb2.RawEventBatch.FromString(message.data)))
            except DecodeError as exc:
                raise PermanentError(f"not a RawEventBatch: {exc}") from None

        items: list[ResolveItem] = []
        carried: list[tuple[int, events_pb2.RawEvent, list[str]]] = []
        rules = {}
        for workspace_id in sorted({e.workspace_id for _, b in batches for e in b.events}):
            rules[workspace_id] = await self._service.rules_for(workspace_id)
        for index, (_message, batch) in enumerate(batches):
            for event in batch.events:
                traits, context = _traits(event)
                collected = collect_identifiers(
                    rules[event.workspace_id],
                    user_id=event.user_id,
                    anonymous_id=event.anonymous_id,
                    previous_id=event.previous_id,
                    traits=traits,
                    context=context,
                )
                for rejection in collected.rejected:
                    IGNORED.labels(rejection.type if rejection.type in BUILTIN_NAMES else "custom").inc()
                    log.info(
                        "identifier ignored", message_id=event.message_id, type=rejection.type, reason=rejection.reason
                    )
                attributes = extract_attributes(traits) if traits and collected.identifiers else None
                items.append(
                    ResolveItem(
                        event.workspace_id,
                        tuple(collected.identifiers),
                        event.message_id,
                        attributes,
                        tuple(collected.rejected_values),
                    )
                )
                carried.append((index, event, [f"{r.type}: {r.reason}" for r in collected.rejected]))

        decisions = await self._service.resolve(items) if items else []

        outgoing: dict[tuple[int, int], events_pb2.ResolvedEventBatch] = {}
        publishes = []
        for (index, event, rejected), item, decision in zip(carried, items, decisions, strict=True):
            if not decision.person_id:
                if not decision.replayed:
                    reasons = rejected + [f"{i.type}: {why}" for i, why in decision.skipped]
                    publishes.append(self._dead_letter(batches[index][0], event, reasons))
                continue
            partition = int(self._names.partitioned(RESOLVED, decision.person_id).rsplit(".", 1)[1])
            resolved = outgoing.setdefault((index, partition), events_pb2.ResolvedEventBatch()).events.add()
            resolved.event.CopyFrom(event)
            resolved.person_id = decision.person_id
            resolved.identifiers.extend(events_pb2.Identifier(type=i.type, value=i.value) for i in item.identifiers)

        for (index, partition), batch in outgoing.items():
            message = batches[index][0]
            publishes.append(
                self._js.publish(
                    self._names.subject(RESOLVED, partition),
                    batch.SerializeToString(),
                    headers={"Nats-Msg-Id": f"{_source_id(message)}:{partition}"},
                )
            )
        await asyncio.gather(*publishes)

    def _dead_letter(self, message: Msg, event: events_pb2.RawEvent, reasons: list[str]):
        UNRESOLVED.inc()
        reason = "no usable identifier" + (f" ({'; '.join(reasons)})" if reasons else "")
        log.warning("event without a usable identifier dead-lettered", message_id=event.message_id, reason=reason)
        return self._js.publish(
            self._names.dlq_subject(CONSUMER),
            events_pb2.RawEventBatch(events=[event]).SerializeToString(),
            headers={
                "Nats-Msg-Id": f"unresolved:{event.workspace_id}:{event.message_id}",
                "Cdp-Dlq-Reason": reason.replace("\r", " ").replace("\n", " ")[:1000],
                "Cdp-Dlq-Consumer": CONSUMER,
                "Cdp-Dlq-Subject": message.subject,
                "Cdp-Original-Msg-Id": _source_id(message),
                "Cdp-Workspace": event.workspace_id,
                "Cdp-Message-Id": event.message_id,
            },
        )


def _source_id(message: Msg) -> str:
    return (message.headers or {}).get("Nats-Msg-Id") or f"raw:{message.metadata.sequence.stream}"
