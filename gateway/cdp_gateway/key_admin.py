"""cdp.gateway.v1.ApiKeyService, served by the gateway itself: proto <-> KeyStore use cases.

Authorisation (a secret key with the ``admin`` scope, of the workspace named by the request)
happens before these handlers run, in :mod:`cdp_gateway.dispatch`, from the method options.
"""

from __future__ import annotations

import re
from datetime import datetime

from google.protobuf import timestamp_pb2

from cdp.gateway.v1 import keys_pb2
from cdp_gateway import keys
from cdp_gateway.auth import KeyStore
from cdp_gateway.keys import KeyRecord, Principal
from cdpkit import names, pagination
from cdpkit.errors import InvalidArgument

_KIND_TO_PROTO = {keys.WRITE: keys_pb2.ApiKey.KIND_WRITE, keys.SECRET: keys_pb2.ApiKey.KIND_SECRET}
_KIND_FROM_PROTO = {v: k for k, v in _KIND_TO_PROTO.items()}
# Generated ids of the foundation's keys ("key_0123...") are still addressable.
_KEY_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _parse_name(name: str) -> tuple[str, str]:
    parts = names.parse(name, "workspaces/{workspace}/apiKeys/{api_key}", id_patterns={"api_key": _KEY_ID})
    return parts["workspace"], parts["api_key"]


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def to_proto(record: KeyRecord, secret: str = "") -> keys_pb2.ApiKey:
    return keys_pb2.ApiKey(
        name=f"workspaces/{record.workspace_id}/apiKeys/{record.key_id}",
        kind=_KIND_TO_PROTO[record.kind],
        scopes=list(record.scopes),
        display_name=record.display_name,
        rate_limit_per_second=record.rate_limit,
        display_hint=record.display_hint,
        key=secret,
        create_time=_timestamp(record.created_at),
        rotate_time=_timestamp(record.rotated_at),
        previous_key_expire_time=_timestamp(record.previous_expires_at),
        revoke_time=_timestamp(record.revoked_at),
    )


class KeyAdmin:
    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def handlers(self) -> dict:
        service = "/cdp.gateway.v1.ApiKeyService/"
        return {
            service + "CreateApiKey": self.create,
            service + "GetApiKey": self.get,
            service + "ListApiKeys": self.list,
            service + "RotateApiKey": self.rotate,
            service + "RevokeApiKey": self.revoke,
        }

    async def create(self, request: keys_pb2.CreateApiKeyRequest, _principal: Principal, **_) -> keys_pb2.ApiKey:
        workspace = names.workspace_of(request.parent)
        api_key = request.api_key
        if api_key.kind not in _KIND_FROM_PROTO:
            raise InvalidArgument("api_key.kind", "must be KIND_WRITE or KIND_SECRET")
        record, secret = await self._store.create_key_record(
            workspace,
            _KIND_FROM_PROTO[api_key.kind],
            frozenset(api_key.scopes),
            key_id=request.api_key_id,
            display_name=api_key.display_name,
            rate_limit=api_key.rate_limit_per_second,
        )
        return to_proto(record, secret)

    async def get(self, request: keys_pb2.GetApiKeyRequest, _principal: Principal, **_) -> keys_pb2.ApiKey:
        return to_proto(await self._store.get_key(*_parse_name(request.name)))

    async def list(
        self, request: keys_pb2.ListApiKeysRequest, _principal: Principal, **_
    ) -> keys_pb2.ListApiKeysResponse:
        workspace = names.workspace_of(request.parent)
        size = pagination.page_size(request.page_size)
        scope = f"apiKeys:{request.parent}:{request.show_revoked}"
        position = pagination.decode_token(request.page_token, scope=scope)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position["t"]), str(position["k"]))
            except (KeyError, TypeError, ValueError):
                raise InvalidArgument("page_token", "is not a token this API issued") from None
        records = await self._store.list_keys(workspace, after=after, limit=size + 1, show_revoked=request.show_revoked)
        response = keys_pb2.ListApiKeysResponse(api_keys=[to_proto(r) for r in records[:size]])
        if len(records) > size:
            last = records[size - 1]
            response.next_page_token = pagination.encode_token(
                {"t": last.created_at.isoformat(), "k": last.key_id}, scope=scope
            )
        return response

    async def rotate(self, request: keys_pb2.RotateApiKeyRequest, _principal: Principal, **_) -> keys_pb2.ApiKey:
        workspace, key_id = _parse_name(request.name)
        grace = request.grace_period.seconds + request.grace_period.nanos / 1e9
        if grace < 0:
            raise InvalidArgument("grace_period", "must not be negative")
        record, secret = await self._store.rotate_key(workspace, key_id, grace_seconds=grace)
        return to_proto(record, secret)

    async def revoke(self, request: keys_pb2.RevokeApiKeyRequest, _principal: Principal, **_) -> keys_pb2.ApiKey:
        return to_proto(await self._store.revoke_key(*_parse_name(request.name)))
