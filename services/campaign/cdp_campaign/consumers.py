"""Triggers in: four durable JetStream consumers, each batch applied in one transaction.

- ``campaign-profile`` on {prefix}.profile.N (partitioned by person, so one person's changes
  stay in order): the events profile stored (event triggers, waits for an event, goals, coupon
  redemptions), tier / lifecycle / tag transitions, the date attributes (birthday, next points
  expiry) of the snapshots, and the events a split moved.
- ``campaign-segment`` on {prefix}.segment.membership: segment entered / exited triggers.
- ``campaign-merges`` on {prefix}.identity.persons_merged: instances, deliveries and coupons
  re-keyed to the surviving person.
- ``campaign-splits`` on {prefix}.identity.person_split: what a merge brought goes back.

Replays are harmless: enrolment is unique per (journey, person, trigger key) and the other
changes only move an instance forward once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg

from cdp.events.v1 import events_pb2
from cdp_campaign.runner import JourneyRunner
from cdpkit.bus import IDENTITY, PROFILE, SEGMENT, BusNames
from cdpkit.consumer import ConsumerSpec, PermanentError


def specs(names: BusNames, batch_size: int) -> dict[str, ConsumerSpec]:
    return {
        "profile": ConsumerSpec(durable="campaign-profile", stream=PROFILE, batch_size=batch_size),
        "segment": ConsumerSpec(
            durable="campaign-segment",
            stream=SEGMENT,
            filter_subject=names.subject(SEGMENT, "membership"),
            batch_size=batch_size,
        ),
        "merges": ConsumerSpec(
            durable="campaign-merges",
            stream=IDENTITY,
            filter_subject=names.subject(IDENTITY, "persons_merged"),
            batch_size=batch_size,
        ),
        "splits": ConsumerSpec(
            durable="campaign-splits",
            stream=IDENTITY,
            filter_subject=names.subject(IDENTITY, "person_split"),
            batch_size=batch_size,
        ),
    }


def _decode(messages: Sequence[Msg], kind: type[Message]) -> list:
    decoded = []
    for message in messages:
        try:
            decoded.append(kind.FromString(message.data))
        except DecodeError as exc:
            raise PermanentError(f"not a {kind.__name__}: {exc}") from None
    return decoded


class Handler:
    def __init__(self, kind: type[Message], apply: Callable) -> None:
        self._kind = kind
        self._apply = apply

    async def __call__(self, messages: Sequence[Msg]) -> None:
        await self._apply(_decode(messages, self._kind))


def handlers(runner: JourneyRunner) -> dict[str, Handler]:
    return {
        "profile": Handler(events_pb2.ProfileChanged, runner.on_profile_changes),
        "segment": Handler(events_pb2.SegmentMembershipChanged, runner.on_memberships),
        "merges": Handler(events_pb2.PersonsMerged, runner.on_merges),
        "splits": Handler(events_pb2.PersonSplit, runner.on_splits),
    }
