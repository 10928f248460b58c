from __future__ import annotations

import aiohttp
import nats
import pytest

from cdp_gateway import __main__ as gateway_main
from cdpkit.bus import BusNames


@pytest.fixture
async def gateway(run_service, service_env, nats_url):
    """A running gateway, a workspace ``shop`` with keys, an HTTP session and a raw-stream reader."""
    runtime = await run_service(gateway_main, gateway_main.Settings, CDP_GATEWAY_HTTP_PORT="0", **extra_env())
    await runtime.keys.create_workspace("shop")
    await runtime.keys.create_workspace("rival")
    _, write_key = await runtime.keys.create_key("shop", "write")
    _, secret_key = await runtime.keys.create_key("shop", "secret", frozenset({"read", "write"}))
    _, rival_secret = await runtime.keys.create_key("rival", "secret", frozenset({"read"}))
    nc = await nats.connect(nats_url)
    names = BusNames(service_env["CDP_BUS_PREFIX"])
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{runtime.http_port}") as http:
        yield Gateway(runtime, http, nc.jetstream(), names, write_key, secret_key, rival_secret)
    await nc.close()


def extra_env() -> dict[str, str]:
    # Services the gateway forwards to are not running in these tests: fail fast.
    return {"CDP_GATEWAY_BACKEND_TIMEOUT_SECONDS": "2", "CDP_GATEWAY_MAX_BATCH_BYTES": str(500 * 1024)}


class Gateway:
    def __init__(self, runtime, http, js, names, write_key, secret_key, rival_secret):
        self.runtime = runtime
        self.http = http
        self.js = js
        self.names = names
        self.write_key = write_key
        self.secret_key = secret_key
        self.rival_secret = rival_secret

    @property
    def basic(self) -> dict[str, str]:
        """Headers authenticating with the write key, as the Segment SDKs do."""
        return basic_auth(self.write_key)

    async def raw_events(self) -> list:
        """Every event stored in the RAW stream so far, in order."""
        from cdp.events.v1 import events_pb2
        from cdpkit.bus import RAW

        stream = self.names.stream(RAW)
        info = await self.js.stream_info(stream)
        events = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else []:
            msg = await self.js.get_msg(stream, seq)
            events.extend(events_pb2.RawEventBatch.FromString(msg.data).events)
        return events

    async def raw_message_count(self) -> int:
        from cdpkit.bus import RAW

        return (await self.js.stream_info(self.names.stream(RAW))).state.messages


def basic_auth(key: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(key, "")}
