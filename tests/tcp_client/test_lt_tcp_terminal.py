"""What `lt tcp` shows on a real terminal (a pty): the Forwarding line, the visitor
connections open now, a visitor's line, and a service that refuses shown as down."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.lt_process import clean_lt_env
from harness.terminal import Terminal

from tunnelsite_client.limits import TCP_CLOSE, TCP_EOF, TCP_OPEN

from .fake_relay import TCP_PORT, FakeTcpRelay
from .peers import closed_port

LT = [sys.executable, "-m", "tunnelsite_client.cli", "tcp"]


@pytest.fixture
def relay() -> Iterator[FakeTcpRelay]:
    fake = FakeTcpRelay().start()
    try:
        yield fake
    finally:
        fake.stop()


def test_the_status_block_shows_forwarding_connections_and_a_refusing_service(
    relay: FakeTcpRelay, tmp_path: Path
) -> None:
    assert relay.app is not None
    env = {**clean_lt_env(tmp_path / "config"), "TERM": "xterm-256color"}
    dead = closed_port()
    terminal = Terminal([*LT, "--port", str(relay.app.port), "--host", relay.url], env)
    try:
        terminal.wait_for(rf"your url is: tcp://127\.0\.0\.1:{TCP_PORT}")
        terminal.wait_for(
            rf"Forwarding\s+tcp://127\.0\.0\.1:{TCP_PORT} -> localhost:{relay.app.port}"
        )
        relay.wait_for_pool(2)
        end = relay.pool[0]

        async def open_one() -> None:
            await end.send(TCP_OPEN, b"203.0.113.5 51234")
            await end.send_data(b"hello")
            assert await end.next() == (b"D", b"hello")

        relay.call(open_one())
        terminal.wait_for(r"Connections\s+1 open, 0 ended")

        async def end_it() -> None:
            assert (await end.exchange(b""))[1] == TCP_EOF

        relay.call(end_it())
        terminal.wait_for(r"Connections\s+0 open, 1 ended")
    finally:
        terminal.stop()

    before = len(relay.pool)
    broken = Terminal([*LT, "--port", str(dead), "--host", relay.url], env)
    try:
        terminal_url = broken.wait_for(r"your url is: (tcp://\S+)")[1]
        assert terminal_url == f"tcp://127.0.0.1:{TCP_PORT}"
        relay.wait_for_pool(before + 1)
        end = relay.pool[before]

        async def refused() -> tuple[bytes, bytes] | None:
            await end.send(TCP_OPEN, b"203.0.113.5 51235")
            return await end.next()

        assert relay.call(refused()) == (
            TCP_CLOSE,
            f"connection refused by localhost:{dead}".encode(),
        )
        broken.wait_for(rf"Last error\s+local app at localhost:{dead} unreachable")
    finally:
        broken.stop()
