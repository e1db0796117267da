"""A client that leaves while its registration's session row is being written (a busy
database) must not leave that row live: the name would be "in use" (409) for good, with no
tunnel behind it. Real PostgreSQL, a table lock to hold the insert, a real relay node."""

from __future__ import annotations

import socket

import psycopg
from harness.prometheus import TOKEN, scrape, value
from harness.waiting import IO_TIMEOUT_S, wait_until

NAME = "left-mid-insert"
WAITING_INSERT = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND query ILIKE 'INSERT INTO %%tunnels_tunnel%%'"
)


def _abandoned(node) -> float:  # type: ignore[no-untyped-def]
    """Registrations that ended without an answer (counted as outcome "other")."""
    return value(scrape(node), "tunnelsite_registrations_total", outcome="other")


def test_a_registration_abandoned_while_its_row_is_written_leaves_the_name_free(
    cluster,  # type: ignore[no-untyped-def]
) -> None:
    node = cluster.start("solo", RELAY_METRICS_TOKEN=TOKEN)
    with psycopg.connect(cluster.pg_url, connect_timeout=5) as locker:
        # Reads go on (the token and name checks); the session row's insert waits.
        locker.execute("LOCK TABLE tunnels_tunnel IN EXCLUSIVE MODE")
        with socket.create_connection(("127.0.0.1", node.port), timeout=IO_TIMEOUT_S) as client:
            client.sendall(f"GET /{NAME} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n\r\n".encode())
            wait_until(
                lambda: cluster.query(WAITING_INSERT)[0][0] > 0,
                IO_TIMEOUT_S,
                "the session row's insert to wait on the lock",
            )
        # The client is gone: the relay gives up on the registration (counted without an
        # answer), while the insert it sent still waits.
        wait_until(lambda: _abandoned(node) >= 1, IO_TIMEOUT_S, "the registration abandoned")
        locker.rollback()  # the lock goes: the insert completes
    # At once, while the abandoned insert may still be on its way back to the relay (its
    # row not yet known to be closed): the new registration waits for it, then closes it
    # first. It once answered 409 ("in use") whenever it came before that insert's result.
    again = node.register(NAME)
    assert again.status == 200, again
    (live,) = cluster.query(
        "SELECT count(*) FROM tunnels_tunnel WHERE subdomain = %s AND is_live", NAME
    )[0:1]
    assert live[0] == 1  # the new registration's row; the abandoned one is closed
