"""A node's database connections (relay/database.py): its ORM calls run on a few threads that
keep their connections, so registrations from many clients at once hold no more than
DATABASE_THREADS_SERVER of them; and when PostgreSQL drops them (a restart, a failover,
an operator's pg_terminate_backend) the next registration is answered at once, on a new
connection, never with the "database busy" 503."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from relay.protocol import DATABASE_THREADS_SERVER

AT_ONCE = 24


def node_connections(cluster, application: str) -> list[tuple[int]]:
    return cluster.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND application_name = %s",
        application,
    )


def test_registrations_at_once_hold_a_few_connections_that_survive_being_cut(cluster):
    # libpq's application_name tells this node's connections from the test's own.
    node = cluster.start("keeper", PGAPPNAME="tunnelsite-keeper")
    with ThreadPoolExecutor(AT_ONCE) as pool:
        answers = list(pool.map(lambda _: node.register(), range(AT_ONCE)))
    assert [a.status for a in answers] == [200] * AT_ONCE, answers
    held = node_connections(cluster, "tunnelsite-keeper")
    assert 1 <= len(held) <= DATABASE_THREADS_SERVER + 1  # the threads', and the heartbeat's
    # beside them only if it is not one of them

    cut = cluster.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = %s",
        "tunnelsite-keeper",
    )
    assert cut and all(done for (done,) in cut)
    with ThreadPoolExecutor(AT_ONCE) as pool:
        again = list(pool.map(lambda _: node.register(), range(AT_ONCE)))
    assert [a.status for a in again] == [200] * AT_ONCE, again
