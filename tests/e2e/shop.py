"""A shop's backend talking to the running CDP the way storefronts and internal teams do: the
Segment tracking API (``/v1/batch``) with the write key, and the HTTP JSON API (transcoded from
the services' protos by the gateway) with the secret key. Used by the end-to-end tests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import RunningStack
from .delivery_receivers import eventually

WS = "demo"


class ApiError(AssertionError):
    pass


class Shop:
    def __init__(self, stack: RunningStack, http: aiohttp.ClientSession) -> None:
        self.stack = stack
        self.http = http

    # Tracking API (write key)

    async def send(self, *messages: dict[str, Any]) -> None:
        """One /v1/batch request; every message gets a messageId unless it has one."""
        batch = [{"messageId": uuid.uuid4().hex, **m} for m in messages]
        response = await self.http.post("/v1/batch", json={"batch": batch}, headers=self.stack.writer())
        if response.status != 200:
            raise ApiError(f"/v1/batch: {response.status} {await response.text()}")

    # JSON API (secret key)

    async def api(self, method: str, path: str, body: Any = None, **params: str) -> dict:
        response = await self.http.request(
            method, f"/v1/workspaces/{WS}/{path}", json=body, params=params or None, headers=self.stack.reader()
        )
        text = await response.text()
        if response.status != 200:
            raise ApiError(f"{method} {path}: {response.status} {text}")
        return json.loads(text) if text else {}

    async def try_api(self, method: str, path: str, body: Any = None, **params: str) -> tuple[int, dict]:
        response = await self.http.request(
            method, f"/v1/workspaces/{WS}/{path}", json=body, params=params or None, headers=self.stack.reader()
        )
        text = await response.text()
        return response.status, json.loads(text) if text else {}

    async def person_id(self, identifier_type: str, value: str, timeout: float = 20.0) -> str:
        """The person holding an identifier, once identity has resolved it."""

        async def found():
            status, body = await self.try_api(
                "GET", "persons:lookup", identifierType=identifier_type, identifierValue=value
            )
            return body["personId"] if status == 200 else None

        return await eventually(found, timeout=timeout, what=f"the person of {identifier_type} {value}")

    async def profile(self, person_id: str) -> dict | None:
        status, body = await self.try_api("GET", f"profiles/{person_id}")
        return body if status == 200 else None

    async def profile_is(self, person_id: str, predicate, what: str = "the profile", timeout: float = 20.0) -> dict:
        async def check():
            body = await self.profile(person_id)
            return body if body is not None and predicate(body) else None

        return await eventually(check, timeout=timeout, what=what)

    async def grant(self, person_id: str, channel: str) -> None:
        await self.api("POST", f"profiles/{person_id}:updateConsent", {"channel": channel, "granted": True})

    async def profile_settings(self, **document) -> dict:
        return await self.api("PATCH", "profileSettings", document, updateMask=",".join(document))

    async def campaign_settings(self, **document) -> dict:
        return await self.api("PATCH", "campaignSettings", document, updateMask=",".join(document))

    async def no_quiet_hours(self) -> None:
        """Whatever the time of day on this machine: no quiet hours in this workspace."""
        await self.campaign_settings(quietHoursStart="", quietHoursEnd="")

    async def segment(self, segment_id: str, rule: str) -> dict:
        return await self.api("POST", "segments", {"displayName": segment_id, "rule": rule}, segmentId=segment_id)

    async def journey(self, journey_id: str, definition: dict) -> dict:
        await self.api("POST", "journeys", {"displayName": journey_id, "definition": definition}, journeyId=journey_id)
        return await self.api("POST", f"journeys/{journey_id}:publish", {})

    async def library_journey(self, template: str) -> dict:
        templates = await self.api("GET", "journeyTemplates")
        (found,) = [t for t in templates["templates"] if t["name"].endswith(f"/{template}")]
        return found["definition"]

    async def instances(self, journey_id: str, person_id: str = "") -> list[dict]:
        params = {"pageSize": "1000", **({"personId": person_id} if person_id else {})}
        return (await self.api("GET", f"journeys/{journey_id}/instances", **params)).get("instances", [])

    async def memberships(self, person_id: str) -> tuple[str, set[str]]:
        """(the person answered for: the survivor of a merged-away id, its segment ids)."""
        body = await self.api("GET", "segments:forPerson", personId=person_id)
        return body.get("personId", ""), {name.rsplit("/", 1)[1] for name in body.get("segments", [])}

    async def is_member(self, segment_id: str, person_id: str) -> bool:
        body = await self.api("GET", f"segments/{segment_id}/members:check", personId=person_id)
        return bool(body.get("member"))

    def sink(self) -> list[dict]:
        """What campaign's dev sink received (make up's provider), one message a line."""
        path = Path(self.stack.stack.state_dir) / "campaign-sink.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
