"""Idle WebSockets cannot take a tunnel down.

A WebSocket holds its pool socket for as long as it is open, and a browser keeps an idle one
open for ever (it answers pings). So WebSockets may hold all of a tunnel's sockets but
RELAY_SPARE_SOCKETS, and one visitor address at most RELAY_WS_MAX_PER_VISITOR of them;
past either, the handshake is refused with 503 and a JSON message, and plain requests
still find a socket. With the defaults, with both clients (the npm one cannot open more
sockets than it was told, so the rule must hold within the pool it has).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from harness.relay import Relay
from harness.websocket import run_visitors
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .appdata import GREETING

VISITORS = 10  # as many as the tunnel has pool sockets


@pytest.fixture(scope="module")
def ws_relay(module_relay_factory) -> Relay:
    return module_relay_factory()  # the defaults are what is tested


@pytest.fixture(params=["npm lt", "our lt"])
def tunnel_name(request, ws_relay, local_app, lt_factory, our_launcher) -> Iterator[str]:
    if request.param == "npm lt":
        client = lt_factory(ws_relay, local_app.port)
        yield client.name
        client.stop()
    else:
        ours = our_launcher(ws_relay, local_app.port)
        yield ours.name
        ours.process.stop()


def test_ten_idle_websockets_from_ten_addresses_leave_plain_requests_a_socket(
    ws_relay, tunnel_name
):
    sources = [f"127.0.0.{2 + i}" for i in range(VISITORS)]

    opened, refused, answer, elapsed, echoes = run_visitors(ws_relay, tunnel_name, sources)

    assert (answer.status, answer.body) == (200, GREETING)
    assert elapsed < 3.0, f"the plain visitor waited {elapsed:.1f} s"
    assert opened and refused and {status for _, status in refused} == {503}
    assert len(opened) + len(refused) == VISITORS
    assert echoes == ["still here"] * len(opened)


def test_one_visitor_address_cannot_hold_all_the_websockets_a_tunnel_allows(ws_relay, tunnel_name):
    sources = ["127.0.0.1"] * VISITORS + ["127.0.0.2"]

    opened, refused, answer, elapsed, echoes = run_visitors(ws_relay, tunnel_name, sources)

    assert (answer.status, elapsed < 3.0) == (200, True)
    assert refused and set(refused) == {("127.0.0.1", 503)}
    assert opened.count("127.0.0.1") < VISITORS // 2
    assert "127.0.0.2" in opened  # another address is not held back by the first
    assert echoes == ["still here"] * len(opened)


def refused_handshake(relay: Relay, name: str, path: str) -> InvalidStatus:
    async def handshake() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://{relay.host(name)}{path}",
                host="127.0.0.1",
                port=relay.port,
                proxy=None,
                open_timeout=10,
            ):
                pass
        return refused.value

    return asyncio.run(handshake())


def test_a_websocket_the_app_refuses_gets_the_apps_status_and_a_message(ws_relay, tunnel_name):
    refused = refused_handshake(ws_relay, tunnel_name, "/no-websocket-here")

    assert refused.response.status_code == 404
    assert json.loads(refused.response.body) == {
        "message": "The tunnel's app refused the WebSocket with HTTP 404."
    }


def test_a_websocket_to_an_unknown_tunnel_gets_404_and_a_message(ws_relay):
    refused = refused_handshake(ws_relay, "nobody-here", "/ws")

    assert refused.response.status_code == 404
    assert json.loads(refused.response.body) == {
        "message": "There is no tunnel called 'nobody-here' on this relay."
    }
