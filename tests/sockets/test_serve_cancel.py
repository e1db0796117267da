"""A listener whose caller is cancelled while it opens is closed, never left listening
(relay/pool/ports.py `serve`): the caller is cancelled after 0, 1, 2, ... turns of the loop,
so the cancel lands on every await of the opening in turn, on asyncio's loop and uvloop."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop
from harness.waiting import IO_TIMEOUT_S

from relay.pool import ports

TURNS = range(8)  # more turns than the opening has awaits: the last ones cancel nothing


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _listening(port: int) -> bool:
    """Whether `port` still listens. A reset means a listener closed while this connection
    waited in its queue: it had been made before the cancel landed and was being closed
    (seen once under `make test`'s load on uvloop). A listener left open accepts."""
    try:
        async with asyncio.timeout(IO_TIMEOUT_S):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
    except (ConnectionRefusedError, ConnectionResetError):
        return False
    writer.close()
    return True


async def _cancelled_after(turns: int) -> bool:
    """Whether the port still listens once a `serve` cancelled after `turns` turns settled."""
    port = _free_port()
    caller = asyncio.ensure_future(ports.serve(asyncio.Protocol, "127.0.0.1", port, backlog=8))
    for _ in range(turns):
        await asyncio.sleep(0)
    caller.cancel()
    try:
        server = await caller
    except asyncio.CancelledError:
        server = None
    for _ in range(len(TURNS) + 2):  # let the opening, and its close, finish
        await asyncio.sleep(0)
    if server is not None:  # made before the cancel landed: the caller owns it
        server.close()
        return False
    return await _listening(port)


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_listener_whose_caller_is_cancelled_while_it_opens_is_closed(loop_factory) -> None:
    async def every_turn() -> list[int]:
        left = []
        for turns in TURNS:
            if await _cancelled_after(turns):
                left.append(turns)
        return left

    loop = loop_factory()
    try:
        assert loop.run_until_complete(every_turn()) == []
    finally:
        loop.close()
