"""relay/edge/server.py's StreamingReceive: the ASGI `receive` of a relay request gives the
body from Twisted's spool in pieces, then waits for Daphne's `http.disconnect` (the response
is done or the visitor left), which every later call gives again."""

from __future__ import annotations

import asyncio
import io

from relay.edge.server import StreamingReceive
from relay.protocol import BODY_CHUNK_BYTES


def test_the_body_comes_in_pieces_then_a_waiting_receive_wakes_on_the_disconnect() -> None:
    body = b"x" * (BODY_CHUNK_BYTES + 5)

    async def go() -> list[dict]:
        receive = StreamingReceive(io.BytesIO(body))
        got = [await receive.get(), await receive.get()]
        waiting = asyncio.ensure_future(receive.get())
        await asyncio.sleep(0)  # let it start waiting: what is tested is the wake-up
        assert not waiting.done()
        receive.put_nowait({"type": "http.request", "body": b"ignored", "more_body": False})
        await asyncio.sleep(0)
        assert not waiting.done()  # Daphne's copy of the body is not a message of its own
        receive.put_nowait({"type": "http.disconnect"})
        got.append(await asyncio.wait_for(waiting, 5))
        got.append(await receive.get())  # and again, at once
        return got

    first, second, third, fourth = asyncio.run(go())
    assert first == {"type": "http.request", "body": body[:BODY_CHUNK_BYTES], "more_body": True}
    assert second == {"type": "http.request", "body": b"xxxxx", "more_body": False}
    assert third == fourth == {"type": "http.disconnect"}


def test_a_spool_twisted_closed_is_a_disconnect() -> None:
    spool = io.BytesIO(b"abc")
    receive = StreamingReceive(spool)
    spool.close()  # Twisted closes it when the visitor's connection is lost
    assert asyncio.run(receive.get()) == {"type": "http.disconnect"}
