"""End to end: `lt --raw-pool` against a real relay leaves out X-Tunnelsite-Pool, so the relay
opens a raw pool port for it, as for the npm client: its pool sockets are raw (the relay logs
the pool port, never upgraded pool connections, and counts them as connected), and it serves.
Without the flag our lt asks for, and gets, the upgraded pool (test_upgraded_pool.py)."""

from __future__ import annotations

from .appdata import GREETING


def test_lt_raw_pool_opens_raw_pool_sockets_on_a_real_relay_and_serves(
    relay_factory, local_app, our_launcher
):
    relay = relay_factory()
    raw = our_launcher(relay, local_app.port, "--raw-pool")  # waits for all 10 pool sockets
    upgraded = our_launcher(relay, local_app.port)

    log = relay.process.output()
    assert f"tunnel {raw.name} opened for 127.0.0.1 on pool port" in log
    assert f"tunnel {raw.name} opened for 127.0.0.1 (upgraded pool connections)" not in log
    assert f"tunnel {upgraded.name} opened for 127.0.0.1 (upgraded pool connections)" in log
    assert relay.sockets(raw.name) == 10
    for name in (raw.name, upgraded.name):
        answer = relay.get("/hello", name=name)
        assert (answer.status, answer.body) == (200, GREETING)
