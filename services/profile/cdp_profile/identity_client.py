"""The identity service's ResolveIdentities over gRPC: the bulk import's way from customer ids
(and emails, phones) to person ids, with the same rules live events go through."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc

# identity.proto: at most 500 sets per call.
MAX_SETS = 500
RETRIES = 6
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED})


_SET_FIELD = re.compile(r"^sets\[(\d+)\][^:]*: (.*)$", re.S)


@dataclass(frozen=True)
class Resolved:
    person_id: str
    # Identifiers identity did not use, with its reasons.
    ignored: tuple[str, ...] = ()


class IdentityResolver:
    def __init__(self, target: str, *, timeout: float = 60.0) -> None:
        self._target = target
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> IdentityResolver:
        self._channel = grpc.aio.insecure_channel(self._target)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def resolve(self, workspace_id: str, sets: Sequence[tuple[Sequence[tuple[str, str]], str]]) -> list[Resolved]:
        """One resolution per (identifiers, message id) set, in order; batches of MAX_SETS.

        The message ids make a repeated call a replay: identity answers it without changing
        anything, so a resumed import resolves to the same persons.
        """
        assert self._channel is not None, "use as an async context manager"
        stub = identity_pb2_grpc.IdentityServiceStub(self._channel)
        resolved: list[Resolved] = []
        for start in range(0, len(sets), MAX_SETS):
            resolved += await self._batch(stub, workspace_id, list(sets[start : start + MAX_SETS]))
        return resolved

    async def _batch(self, stub, workspace_id: str, sets: list) -> list[Resolved]:
        """A set identity refuses as a whole (INVALID_ARGUMENT on ``sets[i]``: an e-mail that is
        none) is answered unresolved with identity's reason, and the others are sent again."""
        refused: dict[int, str] = {}
        while True:
            kept = [i for i in range(len(sets)) if i not in refused]
            if not kept:
                return [Resolved("", (refused[i],)) for i in range(len(sets))]
            request = identity_pb2.ResolveIdentitiesRequest(
                parent=f"workspaces/{workspace_id}",
                sets=[
                    identity_pb2.IdentifierSet(
                        identifiers=[events_pb2.Identifier(type=t, value=v) for t, v in sets[i][0]],
                        message_id=sets[i][1],
                    )
                    for i in kept
                ],
            )
            try:
                response = await self._call(stub, request)
            except grpc.aio.AioRpcError as exc:
                match = _SET_FIELD.match(exc.details() or "")
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or not match or int(match[1]) >= len(kept):
                    raise
                refused[kept[int(match[1])]] = match[2]
                continue
            answers = iter(response.resolutions)
            return [Resolved("", (refused[i],)) if i in refused else _resolved(next(answers)) for i in range(len(sets))]

    async def _call(self, stub, request) -> identity_pb2.ResolveIdentitiesResponse:
        delay = 0.5
        for attempt in range(RETRIES):
            try:
                return await stub.ResolveIdentities(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt == RETRIES - 1:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")


def _resolved(resolution: identity_pb2.Resolution) -> Resolved:
    return Resolved(resolution.person_id, tuple(resolution.ignored))
