"""A loopback listener that owns each connection from the moment it accepts it.

`asyncio.start_server` accepts in a callback and wraps the socket in a transport in a task
of its own, then runs the handler in another: a connection that arrives just before the
server stops (lt reconnecting while the test ends, common on a loaded machine) is left as
a bare socket in a task that never runs, or as a transport no handler has seen, and both
are reported as unclosed by whichever later test the garbage collector runs in. Here the
accept is synchronous and each socket is recorded at once, so `stop` closes every one,
whatever state it reached.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Listener:
    """Call `start` and `stop` in the loop that serves the connections."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self._accepted: list[socket.socket] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self._sock, self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self._accepted.append(conn)
            task = asyncio.get_running_loop().create_task(self._serve(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=conn)
        self._writers.append(writer)
        await self._handler(reader, writer)

    async def stop(self) -> None:
        """No more connections; every one accepted closed (reset), handlers cancelled."""
        asyncio.get_running_loop().remove_reader(self._sock)
        self._sock.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()
        for conn in self._accepted:
            conn.close()  # a no-op for those a transport closed; the rest were never wrapped
        await asyncio.sleep(0)  # the aborted transports' connection_lost runs before we return
