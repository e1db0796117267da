"""One visitor connection to a TCP tunnel's public port, carried over one pool connection.

The walk (relay.protocol, "TCP tunnels"): the visitor is admitted (RELAY_MAX_CONNECTIONS_PER_IP
per address on this tunnel, then relay/pool/tcp_admission.py), waits for a pool connection
(`Tunnel.acquire`, bounded by RELAY_TCP_WAIT_S and RELAY_TCP_MAX_WAITERS), lt is sent OPEN
"<ip> <port>", then bytes go both ways: the visitor's as DATA frames written here as they
arrive, lt's by relay/pool/tcp_splice.py's `pump`. Each
side's backpressure stops reading the other. A FIN either way is an EOF frame; after EOF
both ways the visitor connection is closed and the pool connection serves the next visitor.
Anything abrupt (a reset, CLOSE, a broken frame, the idle timeout) discards the pool
connection and resets the visitor's.

A waiting visitor is not read (`pause_reading` from `connection_made` until OPEN is sent):
the kernel's receive buffer holds its early bytes, so waiting costs the relay no buffer. So
a visitor that leaves while waiting is noticed only when it is handed a pool connection: lt
is sent OPEN, then its EOF or CLOSE.

A connection from RELAY_TCP_PROXY_PROTOCOL's networks (a TCP balancer) is read first for its
PROXY protocol v1 header (relay/pool/tcp_proxy_header.py), within RELAY_HEADER_TIMEOUT_S; its
source is the visitor's address from then on, and the bytes after it are the visitor's
(kept, at most one read, until OPEN). No header, a malformed one, `PROXY UNKNOWN` or the
deadline: the connection is closed and lt hears nothing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, cast

from django.conf import settings as django_settings

from relay import access_log
from relay.headers import in_networks, normal_ip
from relay.pool import bandwidth
from relay.pool.borrowing import NoSocket
from relay.pool.errors import PoolError
from relay.pool.quota import address_key
from relay.pool.socket import PoolSocket
from relay.pool.tcp_admission import admits
from relay.pool.tcp_frames import FrameError, FrameReader, data_frames, frame, reason_payload
from relay.pool.tcp_idle import IdleTimer
from relay.pool.tcp_proxy_header import ProxyHeaderError, ProxyHeaderReader
from relay.pool.tcp_splice import ClientClosed, RelayEnds, pump
from relay.protocol import TCP_CLOSE, TCP_EOF, TCP_MAX_OPEN_BYTES, TCP_OPEN
from relay.stats import STATS

if TYPE_CHECKING:
    from relay.pool.tunnel import Tunnel

logger = logging.getLogger(__name__)

IDLE = "idle timeout"
_NO_LINGER = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}


class TcpVisitor(asyncio.Protocol):
    """Made by the tunnel's listener (relay/pool/tcp_ports.py) for each visitor connection."""

    # Slots, not a __dict__: a tunnel may carry hundreds of these at once.
    __slots__ = (
        "tunnel",
        "transport",
        "peer",
        "key",
        "header",
        "header_timer",
        "conn",
        "task",
        "drainer",
        "early",
        "frames",
        "visitor_done",
        "app_done",
        "clean",
        "ended",
        "lost",
        "close_reason",
        "write_paused",
        "writable",
        "idle",
        "started",
        "bytes_in",
        "bytes_out",
        "paced",
        "held",
        "owed",
    )

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self.peer = ("", 0)
        self.key = ""  # counted in the side's per_address while it is a visitor
        self.header: ProxyHeaderReader | None = None  # a balancer's PROXY header, being read
        self.header_timer: asyncio.TimerHandle | None = None
        self.conn: PoolSocket | None = None  # the pool connection, once lt was sent OPEN
        self.task: asyncio.Task[None] | None = None  # acquire, then lt's side (the pump)
        self.drainer: asyncio.Task[None] | None = None  # while lt is behind on our writes
        self.early = b""  # the visitor's bytes read before a pool connection (none yet)
        self.frames = FrameReader()
        self.visitor_done = False  # the visitor sent its FIN
        self.app_done = False  # lt sent EOF
        self.clean = False  # EOF both ways
        self.ended = False  # nothing more happens on the visitor's side
        self.lost = False  # the visitor's connection is gone (connection_lost)
        self.close_reason: str | None = None  # a CLOSE to send lt as the conversation ends
        self.write_paused = False  # the visitor is behind on what it is sent
        self.writable: asyncio.Future[None] | None = None
        self.idle = IdleTimer(0.0, self._idle_out)
        self.started = time.monotonic()  # for the access log's duration
        self.bytes_in = 0  # the visitor's bytes sent to lt, and lt's to the visitor
        self.bytes_out = 0
        # The plan's bandwidth (relay/pool/bandwidth.py): the wait before the visitor is read
        # on (and before the rest of its last read, `held`, is passed on).
        self.paced: asyncio.Task[None] | None = None
        self.held: memoryview | None = None  # a read's rest, a slice at a time under a limit
        self.owed = 0.0  # until when (monotonic) the pump waits before reading lt on

    # --- asyncio.Protocol, the visitor's side -----------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it
        peer = transport.get_extra_info("peername") or ("", 0)
        ip = normal_ip(peer[0])
        self.peer = (ip, peer[1])
        if in_networks(ip, django_settings.RELAY_TCP_PROXY_PROTOCOL):
            self.header = ProxyHeaderReader()
            self.header_timer = asyncio.get_running_loop().call_later(
                django_settings.RELAY_HEADER_TIMEOUT_S, self._no_header, "no PROXY header in time"
            )
            return
        self._admit()

    def _read_header(self, data: bytes) -> None:
        try:
            got = self.header.feed(data)  # type: ignore[union-attr]
        except ProxyHeaderError as exc:
            self._no_header(str(exc))
            return
        if got is None:
            return
        header, self.early = got
        if header.source is None:
            self._no_header("PROXY UNKNOWN")
            return
        self._header_done()
        self.peer = (normal_ip(header.source[0]), header.source[1])
        self._admit()

    def _header_done(self) -> None:
        self.header = None
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _no_header(self, why: str) -> None:
        """A balancer's connection without a usable PROXY header: closed, lt hears nothing."""
        self._header_done()
        logger.debug("tcp tunnel %s: a balancer's connection closed: %s", self.tunnel.name, why)
        self.ended = True
        if not self.lost:
            reset(self.transport)  # type: ignore[arg-type]

    def _admit(self) -> None:
        """Count the visitor and start its wait for a pool connection, or reset it."""
        tunnel = self.tunnel
        tcp = tunnel.tcp
        ip = self.peer[0]
        key = address_key(ip)
        now = time.monotonic()
        if (
            tunnel.closed
            or tcp is None
            or not tcp.count_in(key, django_settings.RELAY_MAX_CONNECTIONS_PER_IP)
        ):
            logger.debug("tcp tunnel %s: a visitor refused", tunnel.name)
            self.ended = True
            reset(self.transport)  # type: ignore[arg-type]
            return
        self.key = key
        tcp.visitors.add(self)
        if not admits(tunnel.access, tunnel.quota, tunnel, ip, now):
            logger.debug("tcp tunnel %s: a visitor refused", tunnel.name)
            self._let_go()
            return
        transport = cast(asyncio.Transport, self.transport)
        transport.pause_reading()  # until OPEN: the kernel holds what it sends meanwhile
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        tunnel.carried_request()
        tunnel.dirty = True
        tunnel.last_activity = now
        STATS.tcp_opened += 1
        settings = tunnel.registry.settings
        self.idle = IdleTimer(settings.RELAY_TCP_IDLE_TIMEOUT_S, self._idle_out)
        self.idle.start()
        self.task = asyncio.ensure_future(
            self._run(settings.RELAY_TCP_WAIT_S, settings.RELAY_TCP_MAX_WAITERS, key)
        )
        tcp.track(self.task)

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        if self.header is not None:
            self._read_header(data)
            return
        tunnel = self.tunnel
        now = time.monotonic()
        self.idle.touch(now)
        tunnel.last_activity = now
        conn = self.conn
        if conn is None:  # not read while waiting (paused): only a read already under way
            self.early += data  # counted when it goes to lt (_open)
            return
        if self.held is not None:  # paused for the rest of a read: only a read under way
            self.held = memoryview(b"".join((self.held, data)))
            return
        self._pass_on(conn, data, now)

    def _pass_on(self, conn: PoolSocket, data: bytes | memoryview, now: float) -> None:
        """Send lt the visitor's bytes: whole without a limit; under one, a slice of
        BANDWIDTH_SLICE_S of the rate at a time, the rest held (a view, no copy) until the
        slice's wait is over, so the bytes leave at the rate and not in a burst per read."""
        while not self.ended:
            shaper = self.tunnel.shaper
            rest: memoryview | None = None
            if shaper is not None and len(data) > (step := bandwidth.slice_for(shaper.up.rate)):
                view = data if isinstance(data, memoryview) else memoryview(data)
                data, rest = view[:step], view[step:]
            if not self._forward(conn, data, now, shaper) or rest is None:
                self.held = rest  # kept for when the wait is over (None: all sent)
                return
            data = rest

    def _forward(
        self,
        conn: PoolSocket,
        data: bytes | memoryview,
        now: float,
        shaper: bandwidth.Shaper | None,
    ) -> bool:
        """One piece to lt, counted and paced: whether lt may be sent more at once."""
        tunnel = self.tunnel
        tunnel.carried(len(data), 0)
        self.bytes_in += len(data)
        tunnel.dirty = True
        if tunnel.quota is not None:  # the account's bytes for today
            tunnel.quota.add_bytes(len(data))
        try:
            conn.write(b"".join(data_frames(data)))
        except PoolError:
            self._stop(None)
            return False
        if conn.write_paused:
            self._lt_behind(conn)
        if tunnel.quota is not None and tunnel.quota.over_day_bytes(tunnel):
            self._stop("the tunnel's daily traffic allowance is used up")
            return False
        if shaper is not None:
            delay = shaper.up.take(len(data), now)
            if delay:
                self._pace_visitor(shaper, now + delay)
                return False
        return True

    def eof_received(self) -> bool:
        if self.ended:
            return False
        if self.header is not None:
            self._no_header("the connection ended before its PROXY header")
            return False
        self.visitor_done = True
        conn = self.conn
        if conn is not None:
            try:
                conn.write(frame(TCP_EOF))
            except PoolError:
                self._stop(None)
                return True
            if self.app_done:
                self.clean = True
                self._stop(None)  # the task gives the pool connection back
        return True  # half-closed: lt's side may still send

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._header_done()
        self._stop(None if self.clean else "the visitor reset the connection")
        self._let_go()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- closing from outside (relay.pool.tcp_side.TcpSide) ---------------------------------
    def abort(self, reason: str) -> None:
        """The tunnel closed, the operator's Disconnect, shutdown: reset the visitor, discard
        the pool connection (its task's `finally`)."""
        self.clean = False
        self._stop(reason)
        self._let_go()

    # --- lt's side ----------------------------------------------------------------------------
    async def _run(self, wait_s: float, max_waiters: int, key: str) -> None:
        conn: PoolSocket | None = None
        try:
            try:
                conn = await self.tunnel.acquire(wait_s, max_waiters, key)
            except NoSocket as exc:
                logger.debug("tcp tunnel %s: no pool connection: %s", self.tunnel.name, exc)
                return
            if self.ended or self._gone_while_waiting():
                return  # the visitor left: the connection goes back with nothing sent
            self._open(conn)
            await pump(conn, self)
        except (FrameError, ClientClosed, PoolError) as exc:
            # PoolError: the pool connection dropped between its hand-over and OPEN
            logger.debug("tcp tunnel %s: lt ended a connection: %s", self.tunnel.name, exc)
            self.close_reason = None  # lt's doing: no CLOSE back
            self.clean = False
        except RelayEnds as exc:
            self.close_reason = str(exc)
            self.clean = False
        except TimeoutError:
            self.close_reason = IDLE
            self.clean = False
        finally:
            self._conclude(conn)

    def _gone_while_waiting(self) -> bool:
        """Whether the visitor reset its connection while it waited unread (its reset is
        not seen while reading is paused): a peek at its socket, so lt is not sent an OPEN
        and does not dial its app for a visitor who is gone (a flood of connect-and-reset
        would otherwise reach the app as ghost connections)."""
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return False
        # A socket object over the descriptor, detached at once: uvloop's stand-in cannot
        # recv (as relay/pool/reuse.py's peek).
        probe = socket.socket(sock.family, socket.SOCK_STREAM, 0, sock.fileno())
        try:
            probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False  # nothing sent yet: still there
        except OSError:
            self.ended = True  # a reset
            return True
        finally:
            probe.detach()
        return False  # bytes, or a FIN after them (a visitor may send and shut down writing)

    def _open(self, conn: PoolSocket) -> None:
        parts: list[bytes | memoryview] = [frame(TCP_OPEN, open_payload(*self.peer))]
        early = len(self.early)
        if early:  # after a balancer's PROXY header; counted and paced here, once
            self.tunnel.carried(early, 0)
            self.bytes_in += early
            if self.tunnel.quota is not None:
                self.tunnel.quota.add_bytes(early)
            parts.extend(data_frames(self.early))
            self.early = b""
        if self.visitor_done:
            parts.append(frame(TCP_EOF))
        self.conn = conn
        conn.write(b"".join(parts))
        shaper = self.tunnel.shaper
        if early and shaper is not None:  # the plan's bandwidth: read on after their wait
            now = time.monotonic()
            delay = shaper.up.take(early, now)
            if delay:
                self._pace_visitor(shaper, now + delay)
        if conn.write_paused:
            self._lt_behind(conn)
        elif not self.visitor_done and self.paced is None:
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _lt_behind(self, conn: PoolSocket) -> None:
        """lt stopped taking our writes: stop reading the visitor until it catches up."""
        if self.drainer is None:
            self.transport.pause_reading()  # type: ignore[union-attr]
            self.drainer = asyncio.ensure_future(self._drain(conn))
            if self.tunnel.tcp is not None:
                self.tunnel.tcp.track(self.drainer)

    async def _drain(self, conn: PoolSocket) -> None:
        idle_s = self.idle.timeout_s
        try:
            while True:
                try:
                    await conn.drain(idle_s or None)
                    break
                except TimeoutError:
                    if idle_s:  # a peer that stops reading counts as idle
                        self._stop(IDLE)
                        return
        except PoolError:
            self._stop(None)
            return
        self.drainer = None
        if not self.ended and not self.visitor_done and self.paced is None:
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _pace_visitor(self, shaper: bandwidth.Shaper, due: float) -> None:
        """The owner's bandwidth ran out for now: stop reading the visitor until `due`
        (its kernel buffers fill and TCP tells it to wait); nothing it sent is dropped."""
        if self.paced is not None:
            return
        self.transport.pause_reading()  # type: ignore[union-attr]
        self.idle.touch(due)  # the relay's own wait is not idleness
        self.paced = asyncio.ensure_future(self._paced_out(shaper, due))
        if self.tunnel.tcp is not None:
            self.tunnel.tcp.track(self.paced)

    async def _paced_out(self, shaper: bandwidth.Shaper, due: float) -> None:
        await bandwidth.wait(self.tunnel, shaper, shaper.up, due)  # steps: sees a close
        self.paced = None
        if self.ended:
            return
        now = time.monotonic()
        self.idle.touch(now)
        held, self.held = self.held, None
        if held is not None and self.conn is not None:
            self._pass_on(self.conn, held, now)  # the read's next slice (and maybe a wait)
        if (
            not self.ended
            and not self.visitor_done
            and self.drainer is None
            and self.paced is None
            and self.held is None
        ):
            self.transport.resume_reading()  # type: ignore[union-attr]

    # --- called by the pump (relay.pool.tcp_splice.Carried) ----------------------------------
    def deliver(self, data: bytes) -> None:
        tunnel = self.tunnel
        now = time.monotonic()
        self.idle.touch(now)
        tunnel.last_activity = now
        tunnel.carried(0, len(data))
        self.bytes_out += len(data)
        tunnel.dirty = True
        if tunnel.quota is not None:
            tunnel.quota.add_bytes(len(data))
        self.transport.write(data)  # type: ignore[union-attr]
        if tunnel.shaper is not None:  # the plan's bandwidth: the pump waits before reading on
            delay = tunnel.shaper.down.take(len(data), now)
            if delay:
                self.owed = max(self.owed, now + delay)
                self.idle.touch(now + delay)  # the relay's own wait is not idleness

    def app_eof(self) -> None:
        self.app_done = True
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
        if self.visitor_done:
            self.clean = True

    def over_quota(self) -> bool:
        quota = self.tunnel.quota
        return quota is not None and quota.over_day_bytes(self.tunnel)

    async def visitor_writable(self) -> None:
        """Return once the visitor takes more, and the plan's bandwidth lets the pump read lt
        on; TimeoutError after the idle timeout (the visitor's, not the relay's pacing)."""
        if self.owed:
            due, self.owed = self.owed, 0.0
            shaper = self.tunnel.shaper
            if shaper is not None:  # in steps: sees the tunnel close, a new rate
                await bandwidth.wait(self.tunnel, shaper, shaper.down, due)
        if not self.write_paused:
            return
        waiter = self.writable = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.idle.timeout_s or None):
                await waiter
        finally:
            self.writable = None

    # --- the end --------------------------------------------------------------------------------
    def _idle_out(self) -> None:
        self._stop(IDLE)
        if self.task is None or self.task.done():  # over, but the visitor takes nothing
            self.clean = False
            self._let_go()

    def _stop(self, reason: str | None) -> None:
        """End the conversation: the task's `finally` concludes it (gives the pool connection
        back or discards it, closes or resets the visitor)."""
        if reason is not None and self.close_reason is None and not self.clean:
            self.close_reason = reason
        self.ended = True
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def _conclude(self, conn: PoolSocket | None) -> None:
        self.ended = True
        drainer = self.drainer
        if drainer is not None and not drainer.done():
            drainer.cancel()
        if conn is not None:
            tunnel = self.tunnel
            if self.conn is None:
                tunnel.release(conn)  # handed over as the visitor left: nothing was sent
            elif (
                self.clean
                and self.frames.between_frames
                and conn.settled
                and (drainer is None or drainer.done())
            ):
                tunnel.release(conn)  # the next visitor's
            else:
                if self.close_reason is not None:
                    try:
                        conn.write(frame(TCP_CLOSE, reason_payload(self.close_reason)))
                    except PoolError:
                        pass
                if conn.write_paused:
                    # lt is behind (its app stopped reading): the CLOSE would wait behind
                    # everything lt has not read, and a FIN too, so lt, which stopped
                    # reading, would never learn the conversation is over. A reset reaches
                    # it at once (upgraded connections: Twisted's abort resets already).
                    _reset_on_close(conn)
                tunnel.discard(conn)
        self._let_go()

    def _let_go(self) -> None:
        """The visitor's side: reset unless the conversation ended cleanly, then forgotten by
        the tunnel's side. After a clean end its connection is closed once what is buffered
        for it is written, and stays counted until then: a visitor that never reads it is
        reset by the idle timeout."""
        self.ended = True
        transport = self.transport
        if transport is not None and not self.lost:
            if self.clean:
                if not transport.is_closing():
                    transport.close()
                return  # connection_lost comes back here
            reset(transport)
        self.idle.cancel()
        if self.paced is not None:
            self.paced.cancel()  # its wait's `finally` uncounts it from the tunnel's pacing
            self.paced = None
        self.held = None
        tcp = self.tunnel.tcp
        if tcp is not None and self in tcp.visitors:
            tcp.visitors.discard(self)
            tcp.count_out(self.key)
            if access_log.ENABLED:  # one line per visitor connection, as it ends
                end = "closed" if self.clean else (self.close_reason or "reset")
                access_log.line(
                    "tcp", self.tunnel.name, "TCP", "", 0,
                    self.bytes_in, self.bytes_out, self.started, self.peer[0], end,
                )  # fmt: skip
        waiter = self.writable
        if waiter is not None and not waiter.done():
            waiter.cancel()


def open_payload(ip: str, port: int) -> bytes:
    """OPEN's "<ip> <port>", never past TCP_MAX_OPEN_BYTES: an IPv6 scope id ("%eth0", a
    name of any length, meaningless to lt) is dropped; what is left is at most 45 bytes."""
    payload = f"{ip.partition('%')[0]} {port}".encode("ascii", "replace")
    return payload if len(payload) <= TCP_MAX_OPEN_BYTES else f"? {port}".encode("ascii")


def _reset_on_close(conn: PoolSocket) -> None:
    """Make the pool connection's coming abort a reset (a raw pool socket's; an upgraded
    one's Twisted transport resets on abort by itself)."""
    transport = conn.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
        except OSError:
            pass


def reset(transport: asyncio.Transport) -> None:
    """Close with a reset, as the app's side did (or as a TCP client is told "gone"): a
    zero linger makes the close an RST instead of a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
        except OSError:
            pass
    transport.abort()
