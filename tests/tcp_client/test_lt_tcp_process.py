"""`lt tcp` as a process against a relay's TCP side played by the test (fake_relay.py):
what it asks the relay, what it prints, its pool of spare connections and how it grows,
bytes through it both ways, and the relay's refusals."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness.lt_process import LtProcess
from harness.waiting import IO_TIMEOUT_S, wait_until_async

from tunnelsite_client.library import open_tunnel
from tunnelsite_client.limits import TCP_EOF, TCP_OPEN, TCP_SPARE_CONNECTIONS

from .fake_relay import TCP_PORT, FakeTcpRelay


@pytest.fixture
def relay() -> Iterator[FakeTcpRelay]:
    fake = FakeTcpRelay().start()
    try:
        yield fake
    finally:
        fake.stop()


def lt_tcp(run_lt: Callable[..., LtProcess], relay: FakeTcpRelay, *extra: str) -> LtProcess:
    assert relay.app is not None
    return run_lt("tcp", "--port", str(relay.app.port), "--host", relay.url, *extra)


def test_lt_tcp_registers_as_tcp_prints_the_tcp_url_and_keeps_spare_connections(
    run_lt: Callable[..., LtProcess], relay: FakeTcpRelay
) -> None:
    lt = lt_tcp(run_lt, relay, "--remote-port", "41000")
    assert lt.url() == f"tcp://127.0.0.1:{TCP_PORT}"
    head = relay.heads[0]
    assert head["x-tunnelsite-kind"] == "tcp"
    assert head["x-tunnelsite-remote-port"] == "41000"
    relay.wait_for_pool(TCP_SPARE_CONNECTIONS)
    assert len(relay.pool) == TCP_SPARE_CONNECTIONS  # spares only, not max_conn_count


def test_a_visitor_connection_crosses_intact_and_a_spare_replaces_the_busy_connection(
    run_lt: Callable[..., LtProcess], relay: FakeTcpRelay
) -> None:
    lt = lt_tcp(run_lt, relay, "--print-requests")
    lt.url()
    relay.wait_for_pool(TCP_SPARE_CONNECTIONS)
    payload = os.urandom(3 * 1024 * 1024 + 1)
    end = relay.pool[0]

    async def visit() -> bytes:
        await end.send(TCP_OPEN, b"203.0.113.5 51234")
        echoed, ended = await end.exchange(payload)
        assert ended == TCP_EOF
        return echoed

    echoed = relay.call(visit())
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    relay.wait_for_pool(TCP_SPARE_CONNECTIONS + 1)  # one more opened for the next visitor
    line = lt.wait_for_line(r"visitor 203\.0\.113\.5:51234 .* in .* out .* s")
    assert "3.0 MiB in  3.0 MiB out" in line.string


def test_a_relay_that_does_not_speak_tcp_tunnels_ends_lt_with_a_clear_message(
    run_lt: Callable[..., LtProcess], relay: FakeTcpRelay
) -> None:
    relay.not_tcp = True
    lt = lt_tcp(run_lt, relay)
    assert lt.wait() == 1
    said = [line for line in lt.errors if "does not offer TCP tunnels" in line]
    assert said, lt.errors
    assert said[0].startswith("lt: this relay (") and "cannot reach" not in said[0], said
    assert said[0].endswith("is it tunnelsite with RELAY_TCP_PORTS set?"), said
    assert relay.pool == []


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, 4, "TCP tunnels are not in your plan"),
        (409, 5, "port 41000 is reserved for another user"),
        (503, None, "every TCP port is taken"),
    ],
)
def test_the_relays_refusals_are_printed_and_5xx_is_retried(
    run_lt: Callable[..., LtProcess],
    relay: FakeTcpRelay,
    status: int,
    code: int | None,
    message: str,
) -> None:
    relay.refusals.append((status, message))
    lt = lt_tcp(run_lt, relay)
    if code is None:  # a 5xx: lt says why and registers again, then works
        lt.wait_for_line(rf"registration failed: {message}")
        assert lt.url() == f"tcp://127.0.0.1:{TCP_PORT}"
        return
    assert lt.wait() == code
    assert any(message in line for line in lt.errors), lt.errors


def test_lt_tcp_usage_errors_exit_2_with_the_reason(run_lt: Callable[..., LtProcess]) -> None:
    lt = run_lt("tcp", "--port", "5432", "--basic-auth", "alice:secret")
    assert lt.wait() == 2
    assert lt.errors == [
        "lt: --basic-auth is for HTTP tunnels; a TCP tunnel takes --cidr-allow/--cidr-deny"
    ]


def test_the_library_opens_a_tcp_tunnel_with_tcp_true(
    relay: FakeTcpRelay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LT_CONFIG_DIR", str(tmp_path / "config"))
    assert relay.app is not None
    app_port = relay.app.port

    async def go() -> str:
        async with open_tunnel(
            app_port, host=relay.url, tcp=True, timeout_s=IO_TIMEOUT_S
        ) as tunnel:
            await wait_until_async(lambda: len(relay.pool) >= TCP_SPARE_CONNECTIONS)
            return tunnel.url

    assert asyncio.run(go()) == f"tcp://127.0.0.1:{TCP_PORT}"
    assert relay.heads[0]["x-tunnelsite-kind"] == "tcp"
    with pytest.raises(ValueError, match="basic_auth is for HTTP tunnels"):
        asyncio.run(go_refused(relay.url, app_port))


async def go_refused(url: str, port: int) -> None:
    async with open_tunnel(port, host=url, tcp=True, basic_auth=("a:b",)):
        pass


def test_the_token_is_never_printed_even_when_the_relay_echoes_it(
    run_lt: Callable[..., LtProcess], relay: FakeTcpRelay
) -> None:
    token = "lt_tcpsecret0123456789"
    relay.refusals.append((503, f"token {token} is busy"))  # retried: printed as an event
    relay.refusals.append((401, f"token {token} is unknown"))
    lt = lt_tcp(run_lt, relay, "--token", token)
    assert lt.wait() == 3
    assert relay.heads[0]["authorization"] == f"Bearer {token}"
    assert any("is busy" in line for line in lt.lines), lt.lines
    assert any("is unknown" in line for line in lt.errors), lt.errors
    assert all(token not in line for line in lt.lines + lt.errors)
