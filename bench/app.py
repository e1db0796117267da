"""The local app behind the benchmark's tunnels: a small, fast HTTP/1.1 keep-alive server.

One process, a stdlib asyncio `Protocol`, no framework. With `--work-us 20` (what the
benchmark uses) it answers a 1 KiB GET at roughly the rate of a normal fast single-process
app (the reference measurement's app did about 26,000 req/s), so a tunnel's ratio of
direct means something. Run
`python -m bench.app [--port N]`; it prints `bench app listening on http://127.0.0.1:PORT`.

Routes (HEAD works on the GETs):
  GET  /1k             1,024 fixed bytes
  GET  /1m             1 MiB fixed bytes
  GET  /download/N     N bytes of `bench.payload`, streamed with flow control
  POST /sha256         JSON {"sha256", "length"} of the body, hashed as it arrives
  GET  /ws             a WebSocket (Upgrade) that echoes every message (wsproto's framing)
Anything else is 404. `--work-us N` makes every request burn N microseconds of CPU before
it is answered, standing in for the routing, middleware and header objects of a typical
fast framework; the benchmark uses it so that "direct" is a normal fast app, not a bare
socket loop that no real app matches.

Bodies are framed by Content-Length; a chunked body gets 501 and a close. Keep-alive is
HTTP/1.1's default; `Connection: close` (or HTTP/1.0 without keep-alive) closes after the
response.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import time
from base64 import b64encode
from collections.abc import Iterator
from email.utils import formatdate

from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode

from bench import payload

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's, for Sec-WebSocket-Accept

BODY_1K = bytes(i % 94 + 33 for i in range(1024))
BODY_1M = payload.BLOCK
MAX_HEAD_BYTES = 64 * 1024
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 431: b"Too Large", 501: b"No"}


class _Clock:
    """The Date header, formatted at most once a second."""

    def __init__(self) -> None:
        self.second = 0
        self.value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = formatdate(now, usegmt=True).encode()
        return self.value


_clock = _Clock()


def burn(seconds: float) -> None:
    """Busy CPU for `seconds` (a handler's work is CPU time, not a sleep)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class _Request:
    __slots__ = ("method", "target", "keep_alive", "body_left", "digest", "length", "ws_key")

    def __init__(self, method: bytes, target: bytes, keep_alive: bool, length: int) -> None:
        self.method = method
        self.target = target
        self.keep_alive = keep_alive
        self.body_left = length
        self.length = length
        self.digest = hashlib.sha256() if target == b"/sha256" else None
        self.ws_key = b""  # Sec-WebSocket-Key of an Upgrade: websocket request


class AppProtocol(asyncio.Protocol):
    work_s = 0.0  # CPU per request (see --work-us)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.request: _Request | None = None
        self.stream: Iterator[bytes] | None = None
        self.stream_keep_alive = True
        self.write_paused = False
        self.read_paused = False
        self.closing = False
        self.ws: FrameProtocol | None = None  # after a WebSocket upgrade: its frames

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport  # asyncio already sets TCP_NODELAY

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self._echo(data)
            return
        self.buffer += data
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.stream = None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.stream is not None:
            self._pump()
        self._process()

    # --- requests --------------------------------------------------------------------------
    def _process(self) -> None:
        transport = self.transport
        assert transport is not None
        while not self.closing:
            if self.stream is not None or self.write_paused:
                # Busy sending: read no further than one head ahead (backpressure).
                if len(self.buffer) > MAX_HEAD_BYTES and not self.read_paused:
                    self.read_paused = True
                    transport.pause_reading()
                return
            if self.read_paused:
                self.read_paused = False
                transport.resume_reading()
            request = self.request
            if request is not None:
                if request.body_left:
                    take = min(len(self.buffer), request.body_left)
                    if request.digest is not None and take:
                        request.digest.update(memoryview(self.buffer)[:take])
                    del self.buffer[:take]
                    request.body_left -= take
                    if request.body_left:
                        return
                self.request = None
                self._respond(request)
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self._fail(431)
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            self.request = self._parse(head)

    def _parse(self, head: bytes) -> _Request | None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._fail(400)
            return None
        method, target, version = parts
        length = 0
        connection = b""
        ws_key = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit():
                    self._fail(400)
                    return None
                length = int(value)
            elif name == b"transfer-encoding":
                self._fail(501)
                return None
            elif name == b"connection":
                connection = value.strip().lower()
            elif name == b"sec-websocket-key":
                ws_key = value.strip()
        if version == b"HTTP/1.1":
            keep_alive = b"close" not in connection
        else:
            keep_alive = b"keep-alive" in connection
        request = _Request(method, target, keep_alive, length)
        request.ws_key = ws_key if b"upgrade" in connection else b""
        return request

    def _head(self, status: int, length: int, kind: bytes, keep_alive: bool) -> bytes:
        close = b"" if keep_alive else b"Connection: close\r\n"
        return b"HTTP/1.1 %d %s\r\nServer: bench-app\r\nDate: %s\r\nContent-Type: %s\r\n" % (
            status,
            _REASONS.get(status, b"Status"),
            _clock.date(),
            kind,
        ) + b"Content-Length: %d\r\n%s\r\n" % (length, close)

    def _respond(self, request: _Request) -> None:
        transport = self.transport
        assert transport is not None
        method, target, keep_alive = request.method, request.target, request.keep_alive
        if self.work_s:
            burn(self.work_s)
        with_body = method != b"HEAD"
        octets = b"application/octet-stream"
        if method in (b"GET", b"HEAD") and target == b"/1k":
            head = self._head(200, len(BODY_1K), octets, keep_alive)
            transport.write(head + BODY_1K if with_body else head)
        elif method in (b"GET", b"HEAD") and target == b"/1m":
            transport.write(self._head(200, len(BODY_1M), octets, keep_alive))
            if with_body:
                transport.write(BODY_1M)
        elif method in (b"GET", b"HEAD") and target.startswith(b"/download/"):
            size = target.removeprefix(b"/download/")
            if not size.isdigit():
                self._fail(400)
                return
            transport.write(self._head(200, int(size), octets, keep_alive))
            if with_body:
                self.stream = payload.chunks(int(size))
                self.stream_keep_alive = keep_alive
                self._pump()
                return
        elif method == b"GET" and target == b"/ws" and request.ws_key:
            accept = b64encode(hashlib.sha1(request.ws_key + WS_GUID).digest())
            transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept
            )
            self.ws = FrameProtocol(client=False, extensions=[])
            if self.buffer:  # a first frame sent with the upgrade
                data, self.buffer = bytes(self.buffer), bytearray()
                self._echo(data)
            return
        elif method == b"POST" and target == b"/sha256" and request.digest is not None:
            body = json.dumps(
                {"sha256": request.digest.hexdigest(), "length": request.length}
            ).encode()
            transport.write(self._head(200, len(body), b"application/json", keep_alive) + body)
        else:
            body = b"not found\n"
            transport.write(self._head(404, len(body), b"text/plain", keep_alive) + body)
        if not keep_alive:
            self._close()

    def _echo(self, data: bytes) -> None:
        """Each whole message back as it came (text or binary); a close answered and the
        connection closed."""
        ws, transport = self.ws, self.transport
        assert ws is not None and transport is not None
        ws.receive_bytes(data)
        for frame in ws.received_frames():
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
                transport.write(ws.send_data(frame.payload, frame.message_finished))
            elif frame.opcode is Opcode.PING:
                transport.write(ws.pong(frame.payload))
            elif frame.opcode is Opcode.CLOSE:
                reason = frame.payload if isinstance(frame.payload, CloseReason) else None
                transport.write(ws.close(reason.code if reason else None))
                self._close()
                return

    def _pump(self) -> None:
        transport = self.transport
        assert transport is not None
        while self.stream is not None and not self.write_paused and not self.closing:
            piece = next(self.stream, None)
            if piece is None:
                self.stream = None
                if not self.stream_keep_alive:
                    self._close()
                return
            transport.write(piece)

    def _fail(self, status: int) -> None:
        body = b"bad request\n"
        assert self.transport is not None
        self.transport.write(self._head(status, len(body), b"text/plain", False) + body)
        self._close()

    def _close(self) -> None:
        self.closing = True
        self.buffer.clear()
        assert self.transport is not None
        self.transport.close()  # flushes what is buffered, then closes


async def serve(bind: str, port: int, work_us: float = 0) -> None:
    AppProtocol.work_s = work_us / 1e6
    loop = asyncio.get_running_loop()
    server = await loop.create_server(AppProtocol, bind, port, backlog=1024)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    host, bound = server.sockets[0].getsockname()[:2]
    print(f"bench app listening on http://{host}:{bound}", flush=True)
    try:
        await stop
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--work-us", type=float, default=0, help="CPU per request, in us")
    args = parser.parse_args()
    asyncio.run(serve(args.bind, args.port, args.work_us))


if __name__ == "__main__":
    main()
