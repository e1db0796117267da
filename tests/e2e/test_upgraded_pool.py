"""End to end: our `lt` opens its pool connections as upgrades on the relay's own port (bound
by the tunnel's secret), the npm client its raw pool sockets, side by side on one relay; and
a relay with RELAY_RAW_POOLS=false, which only our lt can use."""

from __future__ import annotations

import hashlib
import os

from harness.relay import Relay
from harness.waiting import IO_TIMEOUT_S, wait_until
from harness.websocket import run_websocket
from websockets.asyncio.client import ClientConnection

from .appdata import GREETING, pattern

TEN_MIB = 10 * 1024 * 1024
EXIT_TIMEOUT_S = 15


def opened_upgraded(relay: Relay, name: str) -> bool:
    """The relay logged the tunnel as opened for upgraded pool connections (no raw port)."""
    return f"tunnel {name} opened for 127.0.0.1 (upgraded pool connections)" in (
        relay.process.output()
    )


def test_our_lt_serves_http_a_download_and_a_websocket_over_upgraded_pool_connections(
    relay_factory, local_app, our_launcher, lt_factory
):
    relay = relay_factory()
    ours = our_launcher(relay, local_app.port)
    npm = lt_factory(relay, local_app.port)

    # The relay's log lines are read by a thread of the harness: they may come a moment
    # after the clients printed their URLs (a clean-clone run read the output before it).
    raw_port = f"tunnel {npm.name} opened for 127.0.0.1 on pool port"
    wait_until(lambda: raw_port in relay.process.output(), IO_TIMEOUT_S, "npm's log line")
    wait_until(lambda: opened_upgraded(relay, ours.name), IO_TIMEOUT_S, "our lt's log line")
    assert not opened_upgraded(relay, npm.name)  # the npm client: a raw pool port
    for name in (ours.name, npm.name):
        answer = relay.get("/hello", name=name)
        assert (answer.status, answer.body) == (200, GREETING)
    download = relay.get(f"/bytes/{TEN_MIB}", name=ours.name)
    assert download.status == 200
    assert hashlib.sha256(download.body).digest() == hashlib.sha256(pattern(TEN_MIB)).digest()
    payload = os.urandom(100_000)

    async def session(ws: ClientConnection) -> list[object]:
        await ws.send("over the upgrade")
        text = await ws.recv()
        await ws.send(payload)
        return [text, await ws.recv()]

    assert run_websocket(relay, ours.name, session) == ["over the upgrade", payload]
    relay.wait_for_sockets(ours.name, 10)  # the connection the WebSocket held is replaced
    assert relay.get("/hello", name=ours.name).status == 200


def test_without_raw_pools_the_npm_client_is_refused_with_the_reason_and_ours_works(
    relay_factory, local_app, our_launcher, lt_factory
):
    relay = relay_factory(RELAY_RAW_POOLS="false")
    process = lt_factory.start(relay, local_app.port)

    assert process.wait(timeout=EXIT_TIMEOUT_S) != 0
    assert "accepts only encrypted tunnel clients" in process.output()
    assert "on pool port" not in relay.process.output()  # no raw listener opened
    assert "pool ports: none (RELAY_RAW_POOLS=false" in relay.process.output()
    ours = our_launcher(relay, local_app.port)
    answer = relay.get("/hello", name=ours.name)
    assert (answer.status, answer.body) == (200, GREETING)
