"""Nodes that die or leave: a SIGKILLed node's sessions are closed by the survivors within
the expiry bound, a SIGTERMed node drains first, and a restarted node cleans up only its own
sessions. Heartbeat and expiry are the defaults (2 s and 6 s)."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from harness.fake_client import FakeTunnelClient
from harness.waiting import unique_name, wait_until

pytestmark = pytest.mark.timeout(120)

HEARTBEAT_S = 2.0
EXPIRY_S = 6.0


def test_a_killed_node_frees_its_names_while_the_others_keep_serving(
    cluster, local_app, module_lt_factory, db_rows
):
    one, two, three = (cluster.start(name) for name in ("one", "two", "three"))
    lt = module_lt_factory(three, local_app.port, subdomain=unique_name("keeps"))
    doomed = FakeTunnelClient(two)
    try:
        doomed.connect(1)
        wait_until(lambda: one.get("/hello", name=lt.name).status == 200, 5, "a forward")

        two.process.signal(signal.SIGKILL)
        killed = time.monotonic()
        served = 0

        def reaped() -> bool:
            nonlocal served
            if not db_rows(doomed.name)[-1][1]:
                return True
            # The survivors keep serving their own tunnels, directly and across nodes.
            assert one.get("/hello", name=lt.name).status == 200
            assert three.get("/hello", name=lt.name).status == 200
            served += 1
            return False

        wait_until(reaped, EXPIRY_S + 2 * HEARTBEAT_S + 2, "node two's session to be reaped")
        recovery = time.monotonic() - killed
        print(
            f"\nnode two SIGKILLed: its session closed after {recovery:.2f} s "
            f"(expiry {EXPIRY_S:g} s, heartbeat {HEARTBEAT_S:g} s; {served} requests served "
            "meanwhile)"
        )
        assert db_rows(doomed.name) == [("two", False, "node gone")]
        assert recovery >= EXPIRY_S - HEARTBEAT_S - 0.5  # not reaped while still fresh

        # The name is free: the owner's reconnecting client gets it on a surviving node.
        assert one.register(doomed.name).status == 200
        assert db_rows(doomed.name)[-1] == ("one", True, "")
        # Another client is refused; the same owner (same address) would take it over.
        assert three.register(doomed.name, source="127.0.0.2").status == 409
        assert one.get("/hello", name=lt.name).status == 200
    finally:
        doomed.close()


def test_a_sigtermed_node_drains_then_frees_its_names(
    cluster, local_app, module_lt_factory, db_rows
):
    entry, leaving = cluster.start("entry"), cluster.start("leaving", RELAY_DRAIN_S=15)
    lt = module_lt_factory(leaving, local_app.port, subdomain=unique_name("drain"))
    wait_until(lambda: entry.get("/hello", name=lt.name).status == 200, 5, "a forward")
    key = unique_name("slow")
    answers = []
    slow = threading.Thread(
        target=lambda: answers.append(entry.get(f"/slow?key={key}", name=lt.name))
    )
    slow.start()
    try:
        local_app.wait_for_waiting(key, 1)
        leaving.process.signal(signal.SIGTERM)
        health = wait_until(
            lambda: (a := leaving.get("/healthz")).status == 503 and a, 5, "a 503 health"
        )
        assert health.json() == {"node": "leaving", "tunnels": 1, "draining": True}
        assert leaving.register(unique_name("late")).status == 503
        wait_until(
            lambda: (
                cluster.query("SELECT draining FROM tunnels_node WHERE name = 'leaving'")
                == [(True,)]
            ),
            2 * HEARTBEAT_S,
            "the Node row to say draining",
        )
    finally:
        local_app.release(key)
        slow.join(15)
    assert [a.status for a in answers] == [200]
    assert leaving.process.wait(15) == 0
    assert db_rows(lt.name) == [("leaving", False, "relay stopped")]
    assert entry.register(lt.name).status in (200, 409)  # free (or already taken back by lt)


def test_a_restarted_node_closes_only_its_own_stale_sessions(cluster, db_rows):
    mine, theirs = unique_name("mine"), unique_name("theirs")
    for name, node in ((mine, "phoenix"), (theirs, "elsewhere")):
        cluster.query(
            "INSERT INTO tunnels_tunnel (subdomain, node, client_ip, port, max_sockets, "
            "opened_at, close_reason, is_live, sockets, peak_sockets, requests, bytes_in, "
            "bytes_out) VALUES (%s, %s, '127.0.0.1', 1, 1, now(), '', true, 0, 0, 0, 0, 0) "
            "RETURNING id",
            name,
            node,
        )
    cluster.start("phoenix")
    assert db_rows(mine) == [("phoenix", False, "relay restarted")]
    assert db_rows(theirs) == [("elsewhere", True, "")]
