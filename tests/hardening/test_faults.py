"""Faults: a tunnel client killed mid-response, a locked database, no channel layer.

Each fault costs what it must (the visitor in flight, a registration) and nothing more:
the relay keeps serving live tunnels and recovers by itself when the fault goes away.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import sqlite3
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from harness.relay import Relay
from harness.waiting import wait_until, wait_until_async

from relay.cluster import control
from relay.protocol import DATABASE_QUEUE_WAIT_S, DATABASE_SHED_S


@pytest.fixture(scope="module")
def fault_relay(module_relay_factory) -> Relay:
    return module_relay_factory(RELAY_GRACE_S=10)


def kill(pool_socket) -> None:
    """Close like a killed process whose kernel resets the connection (RST, no FIN)."""
    pool_socket.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    pool_socket.close()


def test_a_client_killed_mid_response_cuts_the_visitor_and_the_tunnel_recovers_on_reconnect(
    fault_relay, fake_client_factory
):
    client = fake_client_factory(fault_relay)
    sockets = client.connect(3)
    with fault_relay.visitor(client.name) as visitor:
        visitor.send(f"GET /big HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        pool_socket, _ = client.next_request()
        pool_socket.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 50000)
        for each in sockets:
            kill(each)

        answer = visitor.response()

    assert not answer.complete and len(answer.body) < 100000
    fault_relay.wait_for_sockets(client.name, 0)

    client.sockets.clear()
    (fresh,) = client.connect(1)  # the client comes back within the grace period
    with fault_relay.visitor(client.name) as visitor:
        visitor.send(f"GET /again HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        pool_socket, request = client.next_request()
        assert pool_socket is fresh and request.target == "/again"
        pool_socket.respond(200, b"back")
        assert visitor.response().body == b"back"


def test_the_npm_client_killed_mid_stream_cuts_the_visitor_and_a_restart_serves_again(
    fault_relay, local_app, lt_factory
):
    first = lt_factory(fault_relay, local_app.port)
    with fault_relay.visitor(first.name) as visitor:
        visitor.send(
            f"GET /sse?key=kill-{first.name} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode()
        )
        assert b"data: first" in visitor.read_some(10)
        first.process.proc.kill()  # SIGKILL: no goodbye, sockets reset by the kernel

        assert visitor.is_closed(timeout=10)

    restarted = lt_factory(fault_relay, local_app.port, subdomain=first.name)
    assert restarted.name == first.name
    answer = fault_relay.get("/hello", name=first.name)
    assert answer.status == 200


def sqlite_path(relay: Relay) -> str:
    return relay.env["DATABASE_URL"].removeprefix("sqlite:///")


AT_ONCE = 6  # registrations while the lock is held: more than one database thread's turn


def test_registration_answers_503_while_the_database_is_locked_and_tunnels_keep_working(
    fault_relay, fake_client_factory
):
    live = fake_client_factory(fault_relay)
    (pool_socket,) = live.connect(1)
    lock = sqlite3.connect(sqlite_path(fault_relay), timeout=1, isolation_level=None)

    def timed_registration(index: int) -> tuple[int, str, float]:
        started = time.monotonic()
        # Each from an address of its own: one address's live-tunnel cap is not the point.
        site = http.client.HTTPConnection(
            "127.0.0.1", fault_relay.port, timeout=60, source_address=(f"127.0.3.{index + 1}", 0)
        )
        try:
            site.request("GET", "/?new", headers={"Host": f"127.0.0.1:{fault_relay.port}"})
            answer = site.getresponse()
            message = json.loads(answer.read())["message"]
        finally:
            site.close()
        return answer.status, message, time.monotonic() - started

    try:
        lock.execute("BEGIN EXCLUSIVE")

        # Each waits for the relay's one SQLite thread, held 5 s per call by the lock: a
        # call not started within DATABASE_QUEUE_WAIT_S is dropped, so none waits out all
        # those queued before it.
        with ThreadPoolExecutor(AT_ONCE) as pool:
            answers = list(pool.map(timed_registration, range(AT_ONCE)))

        with fault_relay.visitor(live.name) as visitor:
            visitor.send(f"GET /during HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
            pool_socket.read_request()
            pool_socket.respond(200, b"still here")
            assert visitor.response().body == b"still here"
    finally:
        lock.close()

    for status, message, waited in answers:
        assert status == 503, answers
        assert "database" in message
        # a thread's turn (SQLite's busy timeout, 5 s) after its wait in the queue at most
        assert waited < DATABASE_QUEUE_WAIT_S + 5 + 3, answers
    # and it is over once the lock is gone: at once, or after the shedding that followed the
    # last call to meet the lock (DATABASE_SHED_S)
    released = time.monotonic()
    wait_until(lambda: fault_relay.register().status == 200, 10, "a registration after the lock")
    assert time.monotonic() - released < DATABASE_SHED_S + 5


class UnreachableLayer:
    """A channel layer that fails `failures` times (Redis down), then delivers `messages`."""

    def __init__(self, failures: int, messages: list[dict[str, Any]]) -> None:
        self.failures = failures
        self.attempts = 0
        self.messages = list(messages)
        self.joined: set[str] = set()

    async def new_channel(self, prefix: str) -> str:
        return prefix + "x"  # as channels_redis: a name, no I/O

    async def group_add(self, group: str, channel: str) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.joined.add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        pass

    async def receive(self, channel: str) -> dict[str, Any]:
        if self.messages:
            return self.messages.pop(0)
        await asyncio.Event().wait()  # nothing more, ever
        raise AssertionError


class Tunnels:
    """The parts of the registry `control.handle` uses."""

    def __init__(self, *names: str) -> None:
        self.tunnels = {
            name: SimpleNamespace(name=name, token_id=None, user_id=None, owner=f"ip:{name}")
            for name in names
        }
        self.closed: list[str] = []

    def close(self, tunnel: Any, reason: str) -> None:
        self.closed.append(tunnel.name)


def test_the_control_listener_waits_out_an_unavailable_channel_layer(monkeypatch, caplog):
    layer = UnreachableLayer(failures=3, messages=[{"type": "tunnel.close", "names": ["gone"]}])
    tunnels = Tunnels("gone", "kept")
    monkeypatch.setattr(control, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(control, "get_registry", lambda: tunnels)

    async def scenario() -> None:
        listener = asyncio.ensure_future(control.listen(retry_s=0.01))
        try:

            def obeyed() -> bool:
                assert not listener.done(), listener
                return bool(tunnels.closed)

            await wait_until_async(obeyed, 5, "the close message after the outage")
        finally:
            listener.cancel()
            with pytest.raises(asyncio.CancelledError):
                await listener

    asyncio.run(scenario())

    assert tunnels.closed == ["gone"]
    assert layer.attempts == 4
    assert layer.joined == {"relay-control.x"}  # one channel, kept across the outage
    warnings = [r for r in caplog.records if "channel layer unavailable" in r.getMessage()]
    assert len(warnings) == 3
