"""The conversations of one TCP tunnel pool connection: wait for OPEN, dial the app, then
splice its bytes with frames both ways until EOF both ways (the connection then waits for
the next OPEN) or an abrupt end (the connection is closed; the pool opens another).

Backpressure both ways: a DATA frame for the app is written and drained before the pool is
read again, and the app is read (TCP_APP_READ_BYTES at a time) only once the relay took the
frames before. Memory per connection: two pool reads (CHUNK_BYTES) and one app read.

While the app takes no bytes, lt watches the pool connection (one more pool read, a CLOSE in
it, the relay closing or resetting the connection after its idle timeout): an app that
stopped reading is reset then, and does not hold the connection for ever. After lt's EOF it
sends nothing more for the conversation (client/tunnelsite_client/tcp_state.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import struct
import time
from collections.abc import Callable

from .http import describe_error
from .limits import (
    CHUNK_BYTES,
    LOCAL_CONNECT_TIMEOUT_S,
    TCP_APP_READ_BYTES,
    TCP_CLOSE,
    TCP_CLOSE_SEND_S,
    TCP_EOF,
    TCP_OPEN,
    TCP_STALL_CHECK_S,
)
from .tcp_frames import FrameError, FrameReader, data_frames, frame, reason_payload
from .tcp_log import TcpConnectionLog, TcpObserver
from .tcp_state import Step, TcpState

Frame = tuple[bytes, bytes]


class PoolClosed(Exception):
    """The relay closed the pool connection (between frames or not)."""


class TcpConnection:
    """One pool connection of a TCP tunnel, serving one visitor connection at a time."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        local_host: str,
        local_port: int,
        observer: TcpObserver,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.local_host = local_host
        self.local_port = local_port
        self.observer = observer
        self.frames = FrameReader()
        self.pending: collections.deque[Frame] = collections.deque()
        self.state = TcpState()
        self.served = 0  # conversations started on this connection
        self.ending = ""  # why the connection ended, for the pool's last error

    async def next_frame(self) -> Frame:
        """The relay's next frame (or DATA piece). Raises PoolClosed, FrameError."""
        while not self.pending:
            data = await self.reader.read(CHUNK_BYTES)
            if not data:
                raise PoolClosed("the relay closed the pool connection")
            self.pending.extend(self.frames.feed(data))
        return self.pending.popleft()

    async def serve(
        self,
        idle_timeout: Callable[[], float | None],
        on_busy: Callable[[bool], None],
        may_close: Callable[[], bool] = lambda: True,
    ) -> str:
        """Serve conversations until the connection must close; returns why ("idle" when it
        waited `idle_timeout()` seconds for a visitor, None: for ever, and `may_close()` then
        agreed: a connection past the pool's spares). `on_busy(True)` when a conversation
        starts, `on_busy(False)` when it ends."""
        while True:
            try:
                async with asyncio.timeout(idle_timeout()):
                    kind, payload = await self.next_frame()
            except TimeoutError:
                if may_close():
                    return "idle"
                continue
            except (PoolClosed, FrameError, OSError) as exc:
                return describe_error(exc) if isinstance(exc, OSError) else str(exc)
            try:
                if self.state.relay_frame(kind) is not Step.OPEN:
                    raise FrameError(f"a {kind.decode('latin-1')} frame between conversations")
            except FrameError as exc:
                return str(exc)
            self.served += 1
            on_busy(True)
            try:
                clean = await self.conversation(payload.decode("ascii", "replace"))
            finally:
                on_busy(False)
            if not clean:
                return self.ending

    async def conversation(self, visitor: str) -> bool:
        """One visitor connection; True when it ended with EOF both ways."""
        started = time.monotonic()
        counts = [0, 0]  # to the app, from the app
        where = f"{self.local_host}:{self.local_port}"
        self.observer.connection_started()
        try:
            async with asyncio.timeout(LOCAL_CONNECT_TIMEOUT_S):
                app_reader, app_writer = await asyncio.open_connection(
                    self.local_host, self.local_port
                )
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, ConnectionRefusedError):
                reason = f"connection refused by {where}"
            elif isinstance(exc, TimeoutError):
                reason = f"{where} did not accept within {LOCAL_CONNECT_TIMEOUT_S:g} s"
            else:
                reason = f"cannot connect to {where}: {describe_error(exc)}"
            self.observer.local_unreachable(reason)
            self._done(visitor, started, counts, reason)
            await self._close(reason)
            return False
        self.observer.local_reachable()
        down = asyncio.create_task(self._relay_to_app(app_writer, counts))
        up = asyncio.create_task(self._app_to_relay(app_reader, counts))
        ending = ""
        clean = False
        try:
            waiting = {down, up}
            while waiting and not ending:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    ending = ending or task.result()
                if not self.state.open and not ending:
                    break  # EOF both ways
            clean = not ending
        finally:
            # First the app's connection (even when lt is stopping and this is cancelled):
            # closed after EOF both ways, else reset.
            if clean:
                app_writer.close()
            else:
                _reset(app_writer)
            down.cancel()
            up.cancel()
            await asyncio.gather(down, up, return_exceptions=True)
        if ending.startswith("app:") and self.state.app_eof:
            # lt sent its EOF: it sends nothing more for this conversation (no CLOSE, which
            # would reach the relay after it gave the connection to the next visitor). The
            # app's socket is gone; the relay's bytes are dropped until its EOF.
            ending = await self._drop_until_relay_eof()
        self._done(visitor, started, counts, ending)
        if ending:
            self.ending = ending
            if ending.startswith("app:"):
                await self._close(ending.removeprefix("app: "))
            self.state.open = False
            return False
        return True

    async def _relay_to_app(self, app: asyncio.StreamWriter, counts: list[int]) -> str:
        """Frames from the relay into the app; "" when EOF both ways, else why it ended."""
        while True:
            try:
                kind, payload = await self.next_frame()
            except (PoolClosed, FrameError) as exc:
                return str(exc)
            except OSError as exc:
                return f"the pool connection failed: {describe_error(exc)}"
            if kind == TCP_OPEN and not self.state.open:
                self.pending.appendleft((kind, payload))  # the next visitor's
                return ""
            try:
                step = self.state.relay_frame(kind)
            except FrameError as exc:
                return str(exc)
            if step is Step.CLOSE:
                return f"closed by the relay: {payload.decode('utf-8', 'replace')}"
            try:
                if step is Step.DATA:
                    app.write(payload)
                    counts[0] += len(payload)
                    self.observer.count_bytes(len(payload), 0)
                    stopped = await self._drain_watching(app)
                    if stopped:
                        return stopped
                elif step is Step.EOF:
                    app.write_eof()
                elif step is Step.DONE:
                    return ""
            except OSError as exc:
                return f"app: the app's connection failed: {describe_error(exc)}"

    async def _drain_watching(self, app: asyncio.StreamWriter) -> str:
        """Wait until the app takes what was written ("", or OSError), watching the pool
        connection meanwhile: why it ended when the relay sent CLOSE or closed or reset it
        (its idle timeout, when the app stopped reading). At most one more pool read goes
        into `pending`; a reset is seen once the pool connection is checked again."""
        if app.transport.get_write_buffer_size() == 0:
            await app.drain()  # nothing buffered: the app's side is not paused
            return ""
        # No task on `writer.wait_closed()`: cancelling it cancels the protocol's own closed
        # future, and every later wait_closed() (this one's next call, the pool's close)
        # then ends at once, cancelled: the second stalled write of a transfer read as a
        # reset. The connection's end is seen by the read, or by `_pool_gone` each tick.
        drain = asyncio.ensure_future(app.drain())
        reading = None if self.pending else asyncio.ensure_future(self.reader.read(CHUNK_BYTES))
        try:
            while True:
                for kind, payload in self.pending:
                    if kind == TCP_CLOSE:
                        return f"closed by the relay: {payload.decode('utf-8', 'replace')}"
                watched = {task for task in (drain, reading) if task is not None}
                done, _ = await asyncio.wait(
                    watched, timeout=TCP_STALL_CHECK_S, return_when=asyncio.FIRST_COMPLETED
                )
                if reading is not None and reading in done:
                    try:
                        data = reading.result()
                    except OSError as exc:
                        return f"the pool connection failed: {describe_error(exc)}"
                    reading = None
                    if not data:
                        return "the relay closed the pool connection"
                    try:
                        self.pending.extend(self.frames.feed(data))
                    except FrameError as exc:
                        return str(exc)
                    continue
                if drain in done:
                    drain.result()  # OSError: the app's connection failed
                    return ""
                if self._pool_gone():
                    return "the pool connection failed: the relay reset it"
        finally:
            for task in (drain, reading):
                if task is not None:
                    task.cancel()
            await asyncio.gather(drain, return_exceptions=True)
            if reading is not None:
                await asyncio.gather(reading, return_exceptions=True)

    def _pool_gone(self) -> bool:
        """Whether the pool connection closed, or its socket has an error (a reset): while lt
        does not read it (the app is not taking bytes) its transport does not see one."""
        if self.writer.transport.is_closing():
            return True
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        try:
            return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        except OSError:
            return True

    async def _drop_until_relay_eof(self) -> str:
        """After lt's EOF and a failed app: the relay's frames dropped until its EOF ("",
        the conversation ended clean) or why the connection ended before."""
        while self.state.open:
            try:
                kind, payload = await self.next_frame()
                step = self.state.relay_frame(kind)
            except (PoolClosed, FrameError) as exc:
                return str(exc)
            except OSError as exc:
                return f"the pool connection failed: {describe_error(exc)}"
            if step is Step.CLOSE:
                return f"closed by the relay: {payload.decode('utf-8', 'replace')}"
        return ""

    async def _app_to_relay(self, app: asyncio.StreamReader, counts: list[int]) -> str:
        """The app's bytes as DATA frames, then EOF; "" when done, else why it ended."""
        while True:
            try:
                data = await app.read(TCP_APP_READ_BYTES)
            except OSError as exc:
                return f"app: the app reset the connection ({describe_error(exc)})"
            try:
                if not data:
                    self.state.app_ended()
                    self.writer.write(frame(TCP_EOF))
                    await self.writer.drain()
                    return ""
                self.writer.writelines(data_frames(data))
                counts[1] += len(data)
                self.observer.count_bytes(0, len(data))
                await self.writer.drain()
            except OSError as exc:
                return f"the pool connection failed: {describe_error(exc)}"

    async def _close(self, reason: str) -> None:
        """Send CLOSE with `reason` (within TCP_CLOSE_SEND_S); the connection is then closed
        by the pool."""
        self.ending = reason
        with contextlib.suppress(OSError, TimeoutError):
            self.writer.write(frame(TCP_CLOSE, reason_payload(reason)))
            async with asyncio.timeout(TCP_CLOSE_SEND_S):
                await self.writer.drain()

    def _done(self, visitor: str, started: float, counts: list[int], ending: str) -> None:
        duration = time.monotonic() - started
        log = TcpConnectionLog(visitor, counts[0], counts[1], duration, ending)
        self.observer.connection_done(log)


# SO_LINGER on, 0 s: close sends a reset, not a FIN (struct linger's two ints).
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def _reset(app: asyncio.StreamWriter) -> None:
    """Close the app's connection with a reset: an abrupt end must not reach the app as a
    FIN, which reads as the visitor's clean end (a request complete, a file whole)."""
    sock = app.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    app.transport.abort()
