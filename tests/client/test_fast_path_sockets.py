"""The fast path (fast_path.py) on real sockets: the relay's end of a pool socket written by
hand, a local app on a real port answering from a script, hostile answers included. Every
answer the relay gets is read with a strict h11 client, so an answer that overran its frame
would show as a protocol error or as the next visitor's answer."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable

import h11
from harness.client_observer import Observer

from tunnelsite_client.exchange import LocalTarget, PoolSocketProxy
from tunnelsite_client.fast_path import Handoff
from tunnelsite_client.limits import CHUNK_BYTES

WAIT_S = 10.0
MIB = 1024 * 1024


# What the app writes for the nth request it reads (in pieces, each its own write), and
# whether it then closes the connection.
Script = Callable[[int, bytes], tuple[list[bytes], bool]]


class ScriptedApp:
    """A local app on a real port: reads each request (head and body, Content-Length or
    chunked: one chunk at most) and
    writes what the script says; keeps every request it read."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if b"\r\nTransfer-Encoding: chunked\r\n" in head:
                    request = head + await reader.readuntil(b"\r\n0\r\n\r\n")
                else:
                    request = head + await reader.readexactly(length)
                self.requests.append(request)
                pieces, close = self.script(len(self.requests) - 1, request)
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                if close:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class Relay:
    """The relay's end of one pool socket, with a strict h11 client reading the answers."""

    def __init__(self, target: LocalTarget, observer: Observer) -> None:
        self.target = target
        self.observer = observer

    async def __aenter__(self) -> Relay:
        relay_end, client_end = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=client_end)
        self.proxy = PoolSocketProxy(reader, writer, self.target, self.observer)
        self.task = asyncio.create_task(self.proxy.run())
        self.reader, self.writer = await asyncio.open_connection(sock=relay_end)
        self.h11 = h11.Connection(h11.CLIENT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        async with asyncio.timeout(WAIT_S):
            await self.task  # the relay closed the socket: the proxy ends on its own

    async def ask(
        self, method: str, path: str, body: bytes = b"", chunked: bool = False
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        headers = [("Host", "name.localhost")]
        headers.append(
            ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body)))
        )
        data = self.h11.send(h11.Request(method=method, target=path, headers=headers))
        if body:
            data += self.h11.send(h11.Data(data=body))
        data += self.h11.send(h11.EndOfMessage())
        self.writer.write(data)
        await self.writer.drain()
        status, fields, answer = 0, {}, b""
        async with asyncio.timeout(WAIT_S):
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA:
                    self.h11.receive_data(await self.reader.read(CHUNK_BYTES))
                elif isinstance(event, h11.Response):
                    status, fields = event.status_code, dict(event.headers.raw_items())
                elif isinstance(event, h11.Data):
                    answer += event.data
                elif isinstance(event, h11.EndOfMessage):
                    self.h11.start_next_cycle()
                    return status, fields, answer
                else:
                    raise AssertionError(f"unexpected {event!r}")

    async def closed(self) -> bool:
        """Whether lt closed the pool socket (after reading what was left)."""
        async with asyncio.timeout(WAIT_S):
            while data := await self.reader.read(CHUNK_BYTES):
                self.h11.receive_data(data)
        return True


def ok(body: bytes, extra: bytes = b"") -> list[bytes]:
    return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body + extra]


def run(app: ScriptedApp, test: Callable[[Relay, Observer], object], **target: object) -> None:
    async def main() -> None:
        port = await app.start()
        observer = Observer()
        try:
            async with Relay(LocalTarget("127.0.0.1", port, **target), observer) as relay:  # type: ignore[arg-type]
                await test(relay, observer)  # type: ignore[misc]
        finally:
            app.close()

    asyncio.run(main())


def test_plain_requests_take_the_fast_path_and_share_one_kept_connection(monkeypatch):
    taken: list[object] = []
    original = PoolSocketProxy._take_over

    async def spy(self: PoolSocketProxy, handoff: Handoff) -> tuple[int, bool]:
        taken.append(handoff)
        return await original(self, handoff)

    monkeypatch.setattr(PoolSocketProxy, "_take_over", spy)
    app = ScriptedApp(lambda n, request: (ok(b"answer %d" % n), False))

    async def test(relay: Relay, observer: Observer) -> None:
        for n in range(5):
            assert await relay.ask("GET", f"/{n}") == (
                200,
                {b"Content-Length": b"8"},
                b"answer %d" % n,
            )
        status, _, body = await relay.ask("POST", "/p", b"x" * 1000)
        assert (status, body) == (200, b"answer 5")
        assert (await relay.ask("GET", "/after"))[2] == b"answer 6"

    run(app, test)
    assert taken == []  # nothing handed over to h11
    assert app.connections == 2  # one kept for all, but not past the POST (keepalive.py)
    assert app.requests[0].startswith(b"GET /0 HTTP/1.1\r\nHost: name.localhost\r\n")


def test_local_host_rewrites_the_host_on_the_fast_path_and_never_the_body():
    app = ScriptedApp(lambda n, request: (ok(b"ok"), False))

    async def test(relay: Relay, observer: Observer) -> None:
        await relay.ask("GET", "/")
        await relay.ask("PUT", "/", b"Host: name.localhost\r\n")

    run(app, test, host_header="app.internal")
    assert all(b"\r\nHost: app.internal\r\n" in r for r in app.requests)
    assert app.requests[1].endswith(b"\r\n\r\nHost: name.localhost\r\n")


def test_a_body_longer_than_its_content_length_is_cut_there_and_the_next_visitor_gets_its_own():
    app = ScriptedApp(
        lambda n, request: (ok(b"first", b"SMUGGLED-BYTES") if n == 0 else ok(b"second"), False)
    )

    async def test(relay: Relay, observer: Observer) -> None:
        assert (await relay.ask("GET", "/a"))[2] == b"first"
        assert (await relay.ask("GET", "/b"))[2] == b"second"
        assert observer.keepalive_off_reasons == ["it sent more after a complete answer"]

    run(app, test)
    assert app.connections == 2


def test_two_answers_in_one_write_never_reach_the_next_visitor():
    second = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTOLEN"
    app = ScriptedApp(lambda n, request: (ok(b"one", second) if n == 0 else ok(b"two"), False))

    async def test(relay: Relay, observer: Observer) -> None:
        assert (await relay.ask("GET", "/a"))[2] == b"one"
        assert (await relay.ask("GET", "/b"))[2] == b"two"

    run(app, test)


def test_garbage_instead_of_an_answer_is_a_502_and_the_pool_socket_serves_on():
    app = ScriptedApp(
        lambda n, request: ([b"SSH-2.0-OpenSSH\r\n\r\n"], True) if n == 0 else (ok(b"fine"), False)
    )

    async def test(relay: Relay, observer: Observer) -> None:
        status, fields, _ = await relay.ask("GET", "/a")
        assert status == 502 and fields[b"x-tunnelsite-client-error"] == b"local-app-unreachable"
        assert observer.unreachable and observer.unreachable[0].startswith("bad HTTP")
        assert await relay.ask("GET", "/b") == (200, {b"Content-Length": b"4"}, b"fine")

    run(app, test)


def test_a_large_body_in_many_pieces_arrives_whole():
    body = bytes(range(256)) * (4 * MIB // 256) + b"tail"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nKeep-Alive: timeout=5\r\n\r\n" % len(body)
    pieces = [head] + [body[i : i + 50_000] for i in range(0, len(body), 50_000)]
    app = ScriptedApp(lambda n, request: (pieces if n == 0 else ok(b"next"), False))

    async def test(relay: Relay, observer: Observer) -> None:
        status, fields, answer = await relay.ask("GET", "/big")
        assert status == 200 and b"Keep-Alive" not in fields
        assert hashlib.sha256(answer).digest() == hashlib.sha256(body).digest()
        assert (await relay.ask("GET", "/next"))[2] == b"next"

    run(app, test)
    assert app.connections == 1  # kept after an answer that ended where it said


def test_an_app_that_closes_in_the_middle_of_a_body_closes_the_pool_socket():
    app = ScriptedApp(
        lambda n, request: ([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part"], True)
    )

    async def test(relay: Relay, observer: Observer) -> None:
        request = h11.Request(method="GET", target="/", headers=[("Host", "x")])
        relay.writer.write(relay.h11.send(request) + relay.h11.send(h11.EndOfMessage()))
        assert await relay.closed()
        assert isinstance(relay.h11.next_event(), h11.Response)
        assert relay.h11.next_event() == h11.Data(data=b"only-part")
        assert relay.h11.their_state is h11.SEND_BODY  # cut short, never taken as whole

    run(app, test)


def test_fast_and_h11_exchanges_interleave_on_one_pool_socket():
    def script(n: int, request: bytes) -> tuple[list[bytes], bool]:
        if n == 1:
            return [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            ], False
        if n == 2:
            return [b"HTTP/1.1 200 OK\r\n\r\nuntil-close"], True
        return ok(b"plain %d" % n), False

    app = ScriptedApp(script)

    async def test(relay: Relay, observer: Observer) -> None:
        assert (await relay.ask("GET", "/0"))[2] == b"plain 0"
        assert (await relay.ask("GET", "/1"))[2] == b"abc"
        assert (await relay.ask("GET", "/2"))[2] == b"until-close"
        assert (await relay.ask("GET", "/3"))[2] == b"plain 3"
        status, _, body = await relay.ask("POST", "/4", b"chunked body", chunked=True)
        assert (status, body) == (200, b"plain 4")
        assert (await relay.ask("GET", "/5"))[2] == b"plain 5"
        assert [log.status for log in observer.logs] == [200] * 6

    run(app, test)
    assert b"\r\nTransfer-Encoding: chunked\r\n" in app.requests[4]  # h11's path framed it
