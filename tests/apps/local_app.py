"""A small real HTTP/1.1 app for end-to-end tests: the "local app" behind a tunnel.

Standalone (stdlib asyncio plus `websockets` for the WebSocket endpoint), keep-alive,
one process. Run `python tests/apps/local_app.py [--port N]`; it prints
`local app listening on http://127.0.0.1:PORT` once it accepts connections. With
`--tls-cert FILE --tls-key FILE` it serves HTTPS instead (and prints `https://`).

Routes:
  GET  /hello                 a fixed greeting
  POST /sha256                JSON {"sha256", "length"} of the body (Content-Length or chunked)
  GET  /bytes/N               N deterministic bytes (see `pattern`)
  GET  /chunked               a chunked response of several chunks
  GET  /stream?n=N            N bytes as a chunked response, in chunks of STREAM_CHUNK bytes
  POST /count?key=K           reads the body as it comes, counting its bytes under K
                              (Content-Length or chunked); JSON {"length"} at its end
  GET  /counted?key=K         JSON {"length", "ended"} of /count?key=K so far ("ended":
                              "whole", "cut" when the body broke off, "" while it comes)
  GET  /sse?key=K             an SSE stream: one event, then a second once /release?key=K
  GET  /slow?key=K            answers only once /release?key=K
  GET  /release?key=K         releases every /sse and /slow waiting on K (now or later)
  GET  /waiting?key=K         how many requests wait on K right now
  GET  /headers               JSON {"method", "target", "headers": [[name, value], ...]}
  GET  /status/N              an empty answer with status N (204, 304, ...)
  GET  /dribble?n=N&every=S   N bytes, one every S seconds (an app that never quite stops)
  GET  /ws?key=K              WebSocket echo; the text "ping-app" makes the app ping the
                              other side and answer "pong received" when the pong comes;
                              the text "close-app" makes the app close with code 4001;
                              "repeat-app:N:T" makes it send the text T N times (N <= 16)
  GET  /ws-closed?key=K       the close code the app received on /ws?key=K ("" if none yet)
HEAD works on every GET route (same headers, no body).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

from websockets.frames import Opcode
from websockets.server import ServerProtocol

GREETING = b"hello from the local app\n"
CHUNKS = [b"first chunk\n", b"second chunk\n", b"third and last chunk\n"]
MAX_HEAD = 64 * 1024
REPEAT_MAX = 16  # "repeat-app:N:T" on /ws: at most this many copies
STREAM_CHUNK = 64 * 1024  # /stream's chunk size
COUNT_READ = 64 * 1024  # /count reads its body this much at a time


def pattern(n: int) -> bytes:
    """The body of /bytes/N: byte i is i % 251 (a prime, so chunk edges never line up)."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


class Releases:
    """Named events that may be released before anyone waits on them."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.waiting: dict[str, int] = {}

    def event(self, key: str) -> asyncio.Event:
        return self.events.setdefault(key, asyncio.Event())

    async def wait(self, key: str) -> None:
        self.waiting[key] = self.waiting.get(key, 0) + 1
        try:
            await self.event(key).wait()
        finally:
            self.waiting[key] -= 1


releases = Releases()
ws_closes: dict[str, str] = {}  # /ws?key=K -> the close code the app received
counted: dict[str, dict[str, object]] = {}  # /count?key=K -> {"length", "ended"}


class BadRequest(Exception):
    pass


async def read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    names = {name: value for name, value in headers}
    if "chunked" in names.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise BadRequest("bad chunk end")
    length = int(names.get("content-length", "0"))
    return await reader.readexactly(length) if length else b""


async def count_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]], key: str) -> int:
    """Read a body without keeping it, counting its bytes under `key` as they come (what a
    relay let through before it cut the upload is what the app saw)."""
    seen: dict[str, object] = {"length": 0, "ended": ""}
    counted[key] = seen
    names = {name: value for name, value in headers}
    total = 0

    async def take(n: int) -> None:
        nonlocal total
        while n > 0:
            data = await reader.read(min(n, COUNT_READ))
            if not data:
                raise asyncio.IncompleteReadError(b"", n)
            total += len(data)
            n -= len(data)
            seen["length"] = total

    try:
        if "chunked" in names.get("transfer-encoding", "").lower():
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers
                    break
                await take(size)
                if await reader.readexactly(2) != b"\r\n":
                    raise BadRequest("bad chunk end")
        else:
            await take(int(names.get("content-length", "0")))
    except (ConnectionError, asyncio.IncompleteReadError):
        seen["ended"] = "cut"
        raise
    seen["ended"] = "whole"
    return total


def head_bytes(status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def respond(
    writer: asyncio.StreamWriter,
    method: str,
    status: int,
    body: bytes,
    content_type: str = "text/plain",
    extra: list[tuple[str, str]] | None = None,
) -> None:
    headers = [("Content-Type", content_type), *(extra or [])]
    if status not in (204, 304) and not 100 <= status < 200:
        headers.append(("Content-Length", str(len(body))))
    else:
        body = b""
    reason = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found"}.get(
        status, "Status"
    )
    writer.write(head_bytes(status, reason, headers))
    if method != "HEAD" and body:
        writer.write(body)
    await writer.drain()


async def write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def handle_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    raw_head: bytes,
) -> bool:
    """Answer one request; False when the connection must not be reused."""
    url = urlsplit(target)
    path = url.path
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    key = query.get("key", "")
    if method == "POST" and path == "/count":
        length = await count_body(reader, headers, key)
        await respond(writer, method, 200, json.dumps({"length": length}).encode())
        return True
    body = await read_body(reader, headers)

    if path == "/ws" and any(n == "upgrade" for n, _ in headers):
        await websocket_echo(reader, writer, raw_head, key)
        return False
    if method == "POST" and path == "/sha256":
        digest = {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
        await respond(writer, method, 200, json.dumps(digest).encode(), "application/json")
    elif method not in ("GET", "HEAD"):
        await respond(writer, method, 405, b"method not allowed\n")
    elif path == "/hello":
        await respond(writer, method, 200, GREETING)
    elif path.startswith("/bytes/"):
        await respond(writer, method, 200, pattern(int(path[7:])), "application/octet-stream")
    elif path == "/chunked":
        writer.write(head_bytes(200, "OK", [("Transfer-Encoding", "chunked")]))
        if method == "HEAD":
            await writer.drain()
            return True
        for chunk in CHUNKS:
            await write_chunk(writer, chunk)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    elif path == "/stream":
        writer.write(head_bytes(200, "OK", [("Transfer-Encoding", "chunked")]))
        block = pattern(STREAM_CHUNK)
        left = int(query.get("n", "0")) if method != "HEAD" else 0
        while left > 0:
            await write_chunk(writer, block[: min(left, STREAM_CHUNK)])
            left -= STREAM_CHUNK
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    elif path == "/counted":
        seen = counted.get(key, {"length": 0, "ended": ""})
        await respond(writer, method, 200, json.dumps(seen).encode(), "application/json")
    elif path == "/sse":
        sse_headers = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
        writer.write(head_bytes(200, "OK", sse_headers))
        await write_chunk(writer, b"data: first\n\n")
        await releases.wait(key)
        await write_chunk(writer, b"data: second\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    elif path == "/slow":
        await releases.wait(key)
        await respond(writer, method, 200, b"released\n")
    elif path == "/release":
        releases.event(key).set()
        await respond(writer, method, 200, b"ok\n")
    elif path == "/ws-closed":
        await respond(writer, method, 200, ws_closes.get(key, "").encode())
    elif path == "/waiting":
        await respond(writer, method, 200, str(releases.waiting.get(key, 0)).encode())
    elif path == "/headers":
        echo = {"method": method, "target": target, "headers": [list(h) for h in headers]}
        await respond(writer, method, 200, json.dumps(echo).encode(), "application/json")
    elif path == "/set-cookie":  # an app's credential in its answer (the inspector redacts it)
        await respond(writer, method, 200, b"cookie set\n", extra=[("Set-Cookie", f"app={key}")])
    elif path == "/dribble":
        n, every = int(query.get("n", "60")), float(query.get("every", "0.5"))
        writer.write(head_bytes(200, "OK", [("Content-Length", str(n))]))
        for _ in range(n if method != "HEAD" else 0):
            writer.write(b".")
            await writer.drain()
            await asyncio.sleep(every)  # the pace of the dribble, not a synchronisation
    elif path.startswith("/status/"):
        status = int(path[8:])
        await respond(writer, method, status, b"", extra=[("ETag", '"v1"')])
    else:
        await respond(writer, method, 404, b"not found\n")
    return True


async def websocket_echo(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw_head: bytes, key: str
) -> None:
    protocol = ServerProtocol()
    protocol.receive_data(raw_head)
    request = protocol.events_received()[0]
    protocol.send_response(protocol.accept(request))

    def flush() -> None:
        for data in protocol.data_to_send():
            if data:
                writer.write(data)
            elif writer.can_write_eof():
                writer.write_eof()

    flush()
    await writer.drain()
    while True:
        data = await reader.read(65536)
        if not data:
            protocol.receive_eof()
        else:
            protocol.receive_data(data)
        for frame in protocol.events_received():
            if frame.opcode is Opcode.TEXT:
                if frame.data == b"ping-app":
                    protocol.send_ping(b"app-ping")
                elif frame.data == b"close-app":
                    protocol.send_close(4001, "asked to close")
                elif frame.data.startswith(b"repeat-app:"):  # repeat-app:<N>:<text>
                    count, text = frame.data.removeprefix(b"repeat-app:").split(b":", 1)
                    for _ in range(min(int(count), REPEAT_MAX)):
                        protocol.send_text(text)
                else:
                    protocol.send_text(frame.data)
            elif frame.opcode is Opcode.BINARY:
                protocol.send_binary(frame.data)
            elif frame.opcode is Opcode.PONG and frame.data == b"app-ping":
                protocol.send_text(b"pong received")
        if key and protocol.close_rcvd is not None:
            ws_closes[key] = str(protocol.close_rcvd.code)
        flush()
        await writer.drain()
        if not data or protocol.state.name == "CLOSED":
            return


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                raw_head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            lines = raw_head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = []
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers.append((name.strip().lower(), value.strip()))
            keep = await handle_request(reader, writer, method, target, headers, raw_head)
            closing = any(n == "connection" and v.lower() == "close" for n, v in headers)
            if not keep or closing or version == "HTTP/1.0":
                return
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return
    finally:
        writer.close()


async def main(port: int, tls: ssl.SSLContext | None = None) -> None:
    server = await asyncio.start_server(
        serve_connection, "127.0.0.1", port, limit=MAX_HEAD, ssl=tls
    )
    bound = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    print(f"local app listening on {scheme}://127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    args = parser.parse_args()
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    try:
        asyncio.run(main(args.port, context))
    except KeyboardInterrupt:
        sys.exit(0)
