"""A node's database connections (relay/database.py): its ORM calls run on a few threads that
keep their connections, so registrations from many clients at once hold no more than
DATABASE_THREADS_SERVER of them; and when PostgreSQL drops them (a restart, a failover,
an operator's pg_terminate_backend) the next registration is answered at once, on a new
connection, never with the "database busy" 503."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from relay.protocol import DATABASE_THREADS_SERVER

AT_ONCE = 24
# This node's connections but the one holding its advisory lock (tunnels/dblock.py: one
# relay per database and node name), which is not a database thread's.
THREADS_CONNECTIONS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND application_name = %s "
    "AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
)


def register_at_once(node) -> list[int]:
    with ThreadPoolExecutor(AT_ONCE) as pool:
        return [answer.status for answer in pool.map(lambda _: node.register(), range(AT_ONCE))]


def test_registrations_at_once_hold_a_few_connections_that_survive_being_cut(cluster):
    # libpq's application_name tells this node's connections from the test's own.
    node = cluster.start("keeper", PGAPPNAME="tunnelsite-keeper")
    assert register_at_once(node) == [200] * AT_ONCE
    held = {pid for (pid,) in cluster.query(THREADS_CONNECTIONS, "tunnelsite-keeper")}
    assert 1 <= len(held) <= DATABASE_THREADS_SERVER
    assert register_at_once(node) == [200] * AT_ONCE
    again = {pid for (pid,) in cluster.query(THREADS_CONNECTIONS, "tunnelsite-keeper")}
    assert len(again) <= DATABASE_THREADS_SERVER
    assert held & again, "the connections of the first registrations were not kept"

    cut = cluster.query(
        f"SELECT pg_terminate_backend(pid) FROM ({THREADS_CONNECTIONS}) AS threads",
        "tunnelsite-keeper",
    )
    assert cut and all(done for (done,) in cut)
    assert register_at_once(node) == [200] * AT_ONCE
    after = {pid for (pid,) in cluster.query(THREADS_CONNECTIONS, "tunnelsite-keeper")}
    assert after and not after & (held | again)  # new connections, in place of the cut ones
