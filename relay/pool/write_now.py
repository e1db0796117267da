"""Writing to a Twisted transport now, not at the loop's next turn.

Twisted's transport queues every write and sends it when the loop next finds the socket
writable: a writer added to the loop, a turn, a send, the writer removed, for every
response to a visitor and every request to one of our lt's pool connections. When nothing
is queued, `write_now` sends at once (one syscall) and queues only what the socket did not
take, so ordering, Twisted's producer pausing and its handling of a broken connection stay
Twisted's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Server as TcpServer


def write_now(transport: Any, data: bytes) -> None:
    """Write `data` to a Twisted transport: straight to the socket when it is plain TCP
    with nothing queued before it (what the socket does not take is queued as Twisted
    queues it, and Twisted's producer pauses as before), else through the transport."""
    if (
        type(transport) is TcpServer
        and not transport.dataBuffer
        and not transport._tempDataBuffer
        and transport.connected
        and not transport.disconnecting
        and not transport._aborting  # abortConnection(): Twisted never sends what follows
        and not transport._writeDisconnected  # loseWriteConnection(): Twisted drops it
        and not transport.TLS
    ):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # reset or closed: the transport's own write finds it and cleans up
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
