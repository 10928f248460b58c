"""Two replicas of identity and of profile (real processes) end with the same profiles as one.

The replicas share the partitions of ``{p}.raw.N`` (identity, keyed by anonymous id) and
``{p}.resolved.N`` (profile, keyed by person) through leases (cdpkit.partitions). The workload
is order-sensitive: every shopper's identifies carry an increasing ``step`` trait, and profile
keeps the trait of the identify it applied last, so a shopper whose events were applied out of
order would end with an older ``step``. The same events go to workspace ``solo`` while one
replica of each service runs, then to workspace ``duo`` while two do, one of them SIGKILLed and
restarted mid-stream; both workspaces must end with identical profiles.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import nats
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdp.events.v1 import events_pb2
from cdp_devstack.infra import free_port
from cdpkit.bus import RAW, BusNames

pytestmark = pytest.mark.e2e

PARTITIONS = 4
SHOPPERS = 16
STEPS = 18  # events per shopper, split in three waves
WAVES = ((0, 6), (6, 12), (12, 18))
BASE_TIME = datetime(2026, 6, 18, 10, 0, tzinfo=UTC)


class Replica:
    """One ``python -m cdp_<service> serve`` process on its own ports."""

    def __init__(self, service: str, tag: str, env: dict[str, str], log_dir: Path) -> None:
        self.service = service
        self.tag = tag
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CDP_")},
            **env,
            f"CDP_{service.upper()}_GRPC_PORT": str(self.grpc_port),
            f"CDP_{service.upper()}_METRICS_PORT": str(self.metrics_port),
        }
        self.log_path = log_dir / f"{service}-{tag}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Replica:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until it exits
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"cdp_{self.service}", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def serving(self) -> bool:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                return answer.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def metric(self, name: str, **labels: str) -> float:
        """A sample of this process's /metrics (0 when absent)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
            if match and ",".join(sorted(match.group(1).split(","))) == wanted:
                return float(match.group(2))
        return 0.0

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        await asyncio.sleep(0.2)


def raw_event(workspace: str, shopper: int, step: int) -> events_pb2.RawEvent:
    """Step k of shopper s: identifies (with an increasing ``step`` trait) alternate with tracks."""
    event = events_pb2.RawEvent(
        message_id=f"{workspace}-s{shopper}-e{step}",
        workspace_id=workspace,
        anonymous_id=f"anon-{shopper}",
    )
    event.timestamp.FromDatetime(BASE_TIME + timedelta(minutes=shopper, seconds=step))
    event.received_at.FromDatetime(BASE_TIME + timedelta(minutes=shopper, seconds=step))
    if step % 2:
        event.type = events_pb2.EVENT_TYPE_TRACK
        event.event = "Product Viewed"
        event.properties.update({"sku": f"SKU-{step}"})
    else:
        event.type = events_pb2.EVENT_TYPE_IDENTIFY
        event.user_id = f"user-{shopper}"
        traits = struct_pb2.Struct()
        traits.update({"step": step, "tier": ["bronze", "silver", "gold"][step % 3]})
        event.traits.CopyFrom(traits)
    return event


async def publish_wave(js, names: BusNames, workspace: str, wave: tuple[int, int]) -> None:
    """As the gateway does: one message per event here, on the partition of its anonymous id."""
    for step in range(*wave):
        for shopper in range(SHOPPERS):
            batch = events_pb2.RawEventBatch(events=[raw_event(workspace, shopper, step)])
            await js.publish(
                names.partitioned(RAW, f"anon-{shopper}"),
                batch.SerializeToString(),
                headers={"Nats-Msg-Id": f"{workspace}:{shopper}:{step}"},
            )


async def stored(conn: asyncpg.Connection, workspace: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM profile.events WHERE workspace_id = $1", workspace)


async def wait_stored(conn: asyncpg.Connection, workspace: str, expected: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (count := await stored(conn, workspace)) < expected:
        assert time.monotonic() < deadline, f"{workspace}: {count} of {expected} events stored"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # anything still in flight (a duplicate) would show now
    assert await stored(conn, workspace) == expected


async def snapshot(conn: asyncpg.Connection, workspace: str) -> dict[str, dict]:
    """Every shopper's profile, keyed by user id (person ids differ between the two runs)."""
    rows = await conn.fetch(
        """SELECT i.id_value AS user_id, p.traits, p.event_count, p.first_seen_at, p.last_seen_at,
                  (SELECT count(*) FROM identity.identifiers x
                    WHERE x.workspace_id = i.workspace_id AND x.person_id = i.person_id) AS identifiers
             FROM identity.identifiers i
             JOIN profile.profiles p ON p.workspace_id = i.workspace_id AND p.person_id = i.person_id
            WHERE i.workspace_id = $1 AND i.id_type = 'user_id'""",
        workspace,
    )
    persons = await conn.fetchval("SELECT count(*) FROM identity.persons WHERE workspace_id = $1", workspace)
    assert persons == SHOPPERS, f"{workspace}: {persons} persons for {SHOPPERS} shoppers"
    profiles = {}
    for row in map(dict, rows):
        user_id = row.pop("user_id")
        profiles[user_id] = {**row, "traits": json.loads(row["traits"])}
    return profiles


async def test_two_replicas_per_service_end_with_the_same_profiles_as_one(service_env, database_url, tmp_path):
    env = {
        **service_env,
        "CDP_PARTITIONS": str(PARTITIONS),
        "CDP_CONSUMER_LEASE_SECONDS": "2",
        "CDP_CONSUMER_ACK_WAIT_SECONDS": "4",
        # Small batches: many batches in flight at once, where a reordering would show.
        "CDP_IDENTITY_CONSUMER_BATCH": "4",
        "CDP_PROFILE_CONSUMER_BATCH": "4",
    }
    names = BusNames(env["CDP_BUS_PREFIX"], PARTITIONS)
    replicas: list[Replica] = []

    def start(service: str, tag: str) -> Replica:
        replica = Replica(service, tag, env, tmp_path).start()
        replicas.append(replica)
        return replica

    def holds(replica: Replica, consumer: str, count: int):
        return lambda: replica.metric("cdp_consumer_partitions", consumer=consumer) == count

    def acked(replica: Replica, consumer: str) -> float:
        return replica.metric("cdp_consumer_messages_total", consumer=consumer, outcome="acked")

    nc = await nats.connect(env["CDP_NATS_URL"])
    conn = await asyncpg.connect(database_url)
    try:
        # One replica of each: the reference run.
        identity_1, profile_1 = start("identity", "1"), start("profile", "1")
        await wait_for(lambda: identity_1.serving() and profile_1.serving(), 60, "the first replicas")
        await wait_for(holds(identity_1, "identity-raw", PARTITIONS), 20, "identity-1 to hold every partition")
        await wait_for(holds(profile_1, "profile-resolved", PARTITIONS), 20, "profile-1 to hold every partition")
        js = nc.jetstream()
        for wave in WAVES:
            await publish_wave(js, names, "solo", wave)
        await wait_stored(conn, "solo", SHOPPERS * STEPS)
        solo = await snapshot(conn, "solo")

        # Two replicas of each: the partitions are shared out, two each.
        identity_2, profile_2 = start("identity", "2"), start("profile", "2")
        await wait_for(lambda: identity_2.serving() and profile_2.serving(), 60, "the second replicas")
        for replica, consumer in (
            (identity_1, "identity-raw"),
            (identity_2, "identity-raw"),
            (profile_1, "profile-resolved"),
            (profile_2, "profile-resolved"),
        ):
            await wait_for(holds(replica, consumer, PARTITIONS // 2), 20, f"{replica.service}-{replica.tag} to hold 2")
        before = {"identity_1": acked(identity_1, "identity-raw"), "profile_1": acked(profile_1, "profile-resolved")}

        await publish_wave(js, names, "duo", WAVES[0])
        await asyncio.sleep(0.3)
        # identity-1 dies mid-stream (no hand-over: its leases expire, its batch is redelivered)...
        identity_1.signal(signal.SIGKILL)
        await publish_wave(js, names, "duo", WAVES[1])
        await wait_for(holds(identity_2, "identity-raw", PARTITIONS), 20, "identity-2 to take over every partition")
        # ...and comes back as a new process, which gets half the partitions again.
        identity_3 = start("identity", "3")
        await wait_for(identity_3.serving, 60, "the restarted identity replica")
        await wait_for(holds(identity_3, "identity-raw", PARTITIONS // 2), 20, "identity-3 to hold 2")
        await publish_wave(js, names, "duo", WAVES[2])
        await wait_stored(conn, "duo", SHOPPERS * STEPS)
        duo = await snapshot(conn, "duo")

        # Every replica consumed: the work really was shared.
        assert acked(identity_2, "identity-raw") > 0
        assert acked(identity_3, "identity-raw") > 0
        assert acked(profile_2, "profile-resolved") > 0
        assert acked(profile_1, "profile-resolved") > before["profile_1"]

        # The same profiles, and the right ones: every shopper's last identify won.
        assert duo == solo
        assert len(solo) == SHOPPERS
        last_identify = max(step for step in range(STEPS) if step % 2 == 0)
        for user_id, profile in solo.items():
            assert profile["event_count"] == STEPS, user_id
            assert profile["traits"]["step"] == last_identify, user_id
            assert profile["identifiers"] == 2, user_id  # anonymous id and user id, one person
    finally:
        await conn.close()
        await nc.close()
        for replica in replicas:
            replica.stop()
        if os.environ.get("CDP_E2E_SHOW_LOGS"):
            for replica in replicas:
                print(f"==== {replica.service}-{replica.tag}\n{replica.log_path.read_text()}")
