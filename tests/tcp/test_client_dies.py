"""A client killed mid-stream (kill -9 lt): its visitor's connection is closed at once, the
tunnel's port stays held for the grace period (another user who asks is kept waiting), then
it is free for its owner's next tunnel, and still not another user's (a client reconnecting
to the old address must not reach a stranger's app: TCP_PORT_QUARANTINE_S).

The relay's range is one port, so "held" and "free" are what the next registration gets;
RELAY_GRACE_S is shortened to what this test waits through (the setting it tests)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from harness.relay import Relay
from harness.tcp_tunnels import URL, LtTcpLauncher, free_port_range, make_users, port_is_held
from harness.waiting import poll

from bench.tcp_transfer import connect

pytestmark = pytest.mark.timeout(120)

GRACE_S = 4.0
CLOSED_WITHIN_S = 5.0  # the visitor's connection, after lt died
# lt retries a refused registration with its backoff (0.5 s doubling): the port may reach the
# second client up to one backoff step after the grace period ended.
FREED_WITHIN_S = GRACE_S + 20.0


@pytest.fixture(scope="module")
def one_port_relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    return module_relay_factory(RELAY_TCP_PORTS=free_port_range(1), RELAY_GRACE_S=GRACE_S)


@pytest.fixture(scope="module")
def users(one_port_relay: Relay) -> Iterator[dict[str, str]]:
    yield make_users(one_port_relay.env, {"first": [], "second": []})


def closed_by_peer(sock: socket.socket) -> bool:
    """Did the peer end the connection (a FIN or a reset), as seen by a short read?"""
    sock.settimeout(0.2)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_killed_client_closes_its_visitors_and_frees_its_port_for_its_owner_after_the_grace(
    lt_tcp: LtTcpLauncher, one_port_relay: Relay, tcp_app: int, users: dict[str, str]
) -> None:
    host = f"http://localhost:{one_port_relay.port}"
    first = lt_tcp(host, tcp_app, "--token", users["first"])
    port = int(one_port_relay.env["RELAY_TCP_PORTS"].split("-")[0])  # the range's only one
    assert first.port == port
    with connect(first.port) as visitor:
        visitor.sendall(b"ECHO\nmid-stream")
        assert visitor.recv(100) == b"mid-stream"  # the conversation is live
        first.process.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert poll(lambda: closed_by_peer(visitor), CLOSED_WITHIN_S), (
            "the visitor's connection outlived its client"
        )

    second = lt_tcp.start(host, tcp_app, "--token", users["second"])
    try:
        # During the grace period the port is the dead tunnel's: still listening, and not
        # given to the second user, whose lt is refused and retries.
        assert poll(lambda: time.monotonic() - killed_at > GRACE_S / 2, GRACE_S)
        assert port_is_held(port)
        refused = (  # what docs/tcp.md's errors say lt prints, and that it keeps trying
            f"registration failed: All 1 TCP ports of this relay (RELAY_TCP_PORTS={port}-{port}) "
            "are in use; try again later (operator: widen the range); registering again in"
        )
        assert refused in second.output(), second.output()
        # After it the dead tunnel's listener is closed...
        assert poll(lambda: not port_is_held(port), FREED_WITHIN_S)
        assert time.monotonic() - killed_at >= GRACE_S * 0.9
        # ... and the second user is still refused: the port was the first user's a moment
        # ago. It is its owner's again: the first user's next lt gets it.
        refusals = second.output().count(refused)
        again = lt_tcp(host, tcp_app, "--token", users["first"])
        assert again.port == port
        with connect(port) as visitor:  # the owner's new tunnel serves on it
            visitor.sendall(b"ECHO\nagain")
            assert visitor.recv(100) == b"again"
        assert poll(lambda: second.output().count(refused) > refusals, FREED_WITHIN_S)
        assert not any(URL.search(line) for line in second.output().splitlines()), (
            "another user got the port its owner had moments ago"
        )
    finally:
        second.stop()


@pytest.fixture(scope="module")
def reserved_relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    # The default grace (15 s): the restarted lt must not wait for it.
    return module_relay_factory(RELAY_TCP_PORTS=free_port_range(2))


def test_lt_run_again_after_a_crash_gets_its_reserved_port_back_at_once(
    lt_tcp: LtTcpLauncher, reserved_relay: Relay, tcp_app: int
) -> None:
    port = int(reserved_relay.env["RELAY_TCP_PORTS"].split("-")[0])
    (token,) = make_users(reserved_relay.env, {"owner": [port]}).values()
    host = f"http://localhost:{reserved_relay.port}"
    first = lt_tcp(host, tcp_app, "--token", token, "--remote-port", str(port))
    first.process.signal(signal.SIGKILL)
    first.process.wait()
    started = time.monotonic()
    again = lt_tcp(host, tcp_app, "--token", token, "--remote-port", str(port))
    try:
        assert again.port == port
        assert time.monotonic() - started < 10.0  # well within the 15 s grace
        with connect(port) as visitor:
            visitor.sendall(b"ECHO\nback")
            assert visitor.recv(100) == b"back"
    finally:
        again.process.stop()
