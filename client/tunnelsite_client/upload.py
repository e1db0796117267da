"""A request body on its way from the pool socket to the local app.

What came with the head goes out with it; the rest streams in while the app answers
(`pump_request_body`, a task of its own only then). Up to REPLAY_MAX_BYTES of it is held
while the request may still be sent again on a fresh connection (replay.py).
"""

from __future__ import annotations

import h11

from .limits import REPLAY_MAX_BYTES
from .local import LocalConnection
from .pool_socket import PoolClosed, PoolSocket


class Upload:
    """A request body as read from the pool socket so far."""

    def __init__(self) -> None:
        self.first = bytearray()  # what came with the head: goes out with it
        self.held: bytearray | None = bytearray()  # all of it, while it may be sent again
        self.complete = False
        self.trailers: list[tuple[bytes, bytes]] = []
        self.size = 0  # body bytes read from the pool socket so far

    def hold(self, data: bytes) -> None:
        self.size += len(data)
        if self.held is not None:
            if len(self.held) + len(data) > REPLAY_MAX_BYTES:
                self.held = None
            else:
                self.held += data


async def pump_request_body(
    pool: PoolSocket, local: h11.Connection, writer: LocalConnection, upload: Upload
) -> None:
    """Copy the request body pool -> local. A local app that stops reading early (it
    answered already) makes us drop the rest, so the pool socket stays in step."""
    local_ok = True
    try:
        await writer.drain()  # the head goes out now (a visitor may wait for 100-continue)
    except OSError:
        local_ok = False
    while True:
        event = await pool.next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise PoolClosed()
        if isinstance(event, h11.Data):
            upload.hold(event.data)
        elif isinstance(event, h11.EndOfMessage):
            upload.complete = True
            upload.trailers = list(event.headers.raw_items())
        if writer.is_closing():
            local_ok = False
        if not local_ok:
            if isinstance(event, h11.EndOfMessage):
                return
            continue
        try:
            if isinstance(event, h11.Data):
                writer.write(local.send(event))
                await writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                writer.write(local.send(h11.EndOfMessage(headers=upload.trailers)))
                await writer.drain()
                return
        except (OSError, h11.LocalProtocolError):
            local_ok = False
