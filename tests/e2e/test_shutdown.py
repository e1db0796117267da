"""SIGTERM drains: requests in flight finish, new connections are refused, exit code 0."""

from __future__ import annotations

import signal
import socket
import time
import uuid

DRAIN_S = 5


def slow_request(relay, local_app, name: str):
    key = uuid.uuid4().hex
    visitor = relay.visitor(name)
    visitor.send(f"GET /slow?key={key} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
    local_app.wait_for_waiting(key, 1)
    return visitor, key


def connect_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(
    relay_factory, local_app, lt_factory, wait_until
):
    relay = relay_factory(RELAY_DRAIN_S=DRAIN_S)
    client = lt_factory(relay, local_app.port)
    visitor, key = slow_request(relay, local_app, client.name)
    with visitor:
        relay.process.signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        relay.process.wait_for_line(r"^stopping", timeout=5)
        wait_until(lambda: connect_refused(relay.port), 5, "the public port to close")
        assert relay.process.proc.poll() is None  # still draining

        local_app.release(key)
        answer = visitor.response()

        assert (answer.status, answer.body, answer.complete) == (200, b"released\n", True)
        assert relay.process.wait(timeout=DRAIN_S) == 0
    assert time.monotonic() - stopped_at < DRAIN_S


def test_sigterm_gives_up_on_a_stuck_request_after_the_drain_period(
    relay_factory, local_app, lt_factory
):
    relay = relay_factory(RELAY_DRAIN_S=1)
    client = lt_factory(relay, local_app.port)
    visitor, key = slow_request(relay, local_app, client.name)
    try:
        with visitor:
            relay.process.signal(signal.SIGTERM)
            stopped_at = time.monotonic()

            assert relay.process.wait(timeout=6) == 0
            assert time.monotonic() - stopped_at >= 0.9
            assert "1 requests still running" in relay.process.output()
            assert visitor.is_closed(timeout=2)
    finally:
        local_app.release(key)


def test_sighup_on_a_relay_without_a_certificate_stops_nothing(
    relay_factory, local_app, lt_factory
):
    """A systemd unit's `ExecReload=/bin/kill -HUP $MAINPID` (docs/deploy.md, for a relay
    with its own certificate) on a relay behind a proxy: it says so and serves on."""
    relay = relay_factory()
    client = lt_factory(relay, local_app.port)
    with relay.visitor(client.name) as visitor:
        assert visitor.request("GET", "/hello").status == 200
        relay.process.signal(signal.SIGHUP)
        relay.process.wait_for_line(r"SIGHUP: this relay has no TLS certificate to reload")
        assert visitor.request("GET", "/hello").status == 200  # the same connection
    assert relay.process.proc.poll() is None
