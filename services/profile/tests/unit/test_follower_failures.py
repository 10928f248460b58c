"""Which failures bring an identity announcement closer to the dead-letter subject (pure)."""

from __future__ import annotations

import asyncpg

from cdp_profile.consumers import counts_against_announcement


def test_the_identity_follower_does_not_count_a_database_restart_against_an_announcement():
    restarting = [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(),
    ]
    assert not any(counts_against_announcement(e) for e in restarting)
    assert counts_against_announcement(asyncpg.QueryCanceledError("canceling statement due to statement timeout"))
    assert counts_against_announcement(RuntimeError("bad data"))
