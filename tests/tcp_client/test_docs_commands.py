"""The `lt tcp` lines of docs/client.md ("TCP tunnels: `lt tcp`"), run as a user pastes them,
against a relay's TCP side played by the test (fake_relay.py): the relay URL becomes the
fake's and the local port its echo app's, nothing else changes. Each registers as a TCP
tunnel and prints its tcp:// URL; the ones whose service is on this machine carry a
visitor's bytes both ways."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator

import pytest
from harness.lt_process import LtProcess
from harness.processes import ROOT

from tunnelsite_client.limits import TCP_EOF, TCP_OPEN

from .fake_relay import TCP_PORT, FakeTcpRelay

SECTION = "## TCP tunnels: `lt tcp`"
DOCS_HOST = "https://tunnels.example"


def docs_lines() -> list[str]:
    text = (ROOT / "docs" / "client.md").read_text()
    section = text[text.index(SECTION) :]
    fence = re.search(r"^```sh[^\n]*\n(.*?)^```", section, re.M | re.S)
    assert fence is not None, "the section's example fence"
    return [line for line in fence.group(1).splitlines() if line.startswith("lt tcp ")]


LINES = docs_lines()


def test_the_section_shows_the_commands_it_promises() -> None:
    assert len(LINES) == 4
    assert any("--remote-port" in line for line in LINES)


@pytest.fixture
def relay() -> Iterator[FakeTcpRelay]:
    fake = FakeTcpRelay().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.mark.parametrize("line", LINES)
def test_each_lt_tcp_line_of_the_docs_opens_a_tcp_tunnel(
    line: str, run_lt: Callable[..., LtProcess], relay: FakeTcpRelay
) -> None:
    assert relay.app is not None
    args = shlex.split(line.replace(DOCS_HOST, relay.url))[1:]
    args[args.index("--port") + 1] = str(relay.app.port)
    lt = run_lt(*args)
    assert lt.url() == f"tcp://127.0.0.1:{TCP_PORT}"
    head = relay.heads[0]
    assert head["x-tunnelsite-kind"] == "tcp"
    if "--remote-port" in args:
        assert head["x-tunnelsite-remote-port"] == args[args.index("--remote-port") + 1]
    if "--cidr-allow" in args:
        assert "203.0.113.0/24" in head["x-tunnelsite-access"]
    if "--local-host" in args:
        return  # db.internal is the reader's own machine; the registration is what runs here
    relay.wait_for_pool(1)
    end = relay.pool[0]

    async def visit() -> tuple[bytes, bytes]:
        await end.send(TCP_OPEN, b"203.0.113.5 51234")
        return await end.exchange(b"SELECT 1;")

    assert relay.call(visit()) == (b"SELECT 1;", TCP_EOF)
    if "--print-requests" in args:
        lt.wait_for_line(r"visitor 203\.0\.113\.5:51234  9 B in  9 B out")
