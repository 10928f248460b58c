"""A delivery's new status as a ``CampaignMessage`` announcement (an outbox row)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter

from cdp.events.v1 import events_pb2
from cdpkit.bus import CAMPAIGN, BusNames

MESSAGES = Counter("cdp_campaign_deliveries_total", "Delivery outcomes", ["channel", "status"])
_KIND = {"sent": "message_sent", "delivered": "message_delivered", "failed": "message_failed", "dead": "message_failed"}


def announcement(names: BusNames, row: dict, now: datetime) -> tuple[str, str, str, bytes]:
    """The delivery's new status for {prefix}.campaign.message_*: an outbox row."""
    status = row["status"]
    MESSAGES.labels(row["channel"], status).inc()
    message = events_pb2.CampaignMessage(
        workspace_id=row["workspace_id"],
        journey_id=row["journey_id"],
        journey_version=row["version"],
        instance_id=str(row["instance_id"]),
        step_id=row["step_id"],
        variant=row["variant"],
        person_id=row["person_id"],
        channel=row["channel"],
        delivery_id=row["delivery_id"],
        status=status,
        reason=row["reason"] if status != "sent" else "",
        attempt=row["attempts"],
    )
    message.event_time.FromDatetime(now)
    subject = names.subject(CAMPAIGN, _KIND.get(status, "message_suppressed"))
    msg_id = f"campaign:{row['delivery_id']}:{status}:{row['attempts']}"
    return row["workspace_id"], subject, msg_id, message.SerializeToString()
