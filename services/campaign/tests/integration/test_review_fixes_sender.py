"""The sender against a real SMTP server (aiosmtpd) with the real profile: one bad message fails
alone, the rest of its batch goes exactly once."""

from __future__ import annotations

from datetime import timedelta

from ..conftest import eventually


async def _count(coro, n):
    return len(await coro) == n


async def test_a_bad_message_fails_alone_and_the_rest_of_its_batch_goes_once(start_campaign, smtp):
    c = await start_campaign(**smtp.env())
    good = await c.person(email="good@example.com", first_name="Ann", age=30)
    # A trait that would inject a header, and one that breaks the template at run time.
    injected = await c.person(email="inj@example.com", first_name="Bo\nBcc: x@evil.example", age=41)
    broken = await c.person(email="broken@example.com", first_name="Cy", age="30")
    journey = {
        "trigger": {"event": {"name": "Signed Up"}},
        "steps": [
            {
                "id": "hello",
                "send": {
                    "channel": "email",
                    "template": {
                        "subject": "Hi {{ traits.first_name }}",
                        "body": "{{ traits.age + 1 }} in{{ traits.address.city }}",
                    },
                },
            }
        ],
    }
    await c.journey("hello", journey)
    for person in (good, injected, broken):
        await c.track(person, "Signed Up")
    await eventually(lambda: _count(c.deliveries("hello"), 3), what="three deliveries")
    await c.tick()
    by_person = {d.person_id: d for d in await c.deliveries("hello")}
    assert by_person[good].status == "sent" and by_person[injected].status == "sent"
    assert by_person[broken].status == "failed"
    assert by_person[broken].reason.startswith("template_error: TypeError")
    c.clock.advance(timedelta(minutes=10))
    await c.tick()
    # Each message reached the SMTP server once; the line break became a space, not a header.
    assert sorted(smtp.transmissions.values()) == [1, 1]
    mails = {m["subject"]: (m["to"], m["body"].strip()) for m in smtp.delivered.values()}
    # A missing attribute at any depth (nobody has an address) renders empty.
    assert mails == {
        "Hi Ann": (["good@example.com"], "31.0 in"),
        "Hi Bo Bcc: x@evil.example": (["inj@example.com"], "42.0 in"),
    }
