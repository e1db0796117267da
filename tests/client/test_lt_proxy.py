"""exchange.py on real sockets: the relay side is a socketpair written by hand, byte by byte."""

from __future__ import annotations

import asyncio
import socket

import h11
from harness.client_observer import Observer
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelsite_client.exchange import LocalTarget, PoolSocketProxy, rewrite_host

WAIT_S = 10.0


async def _capture_server(seen: list[bytes]) -> asyncio.Server:
    """A local app that records each raw request (head + body) and answers `ok`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = b""
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        if "Content-Length" in fields:
            body = await reader.readexactly(int(fields["Content-Length"]))
        elif fields.get("Transfer-Encoding") == "chunked":
            body = await reader.readuntil(b"0\r\n\r\n")
        seen.append(head + body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _read_response(conn: h11.Connection, reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, body = 0, b""
    async with asyncio.timeout(WAIT_S):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                conn.start_next_cycle()
                return status, body
            else:
                raise AssertionError(f"unexpected {event!r}")


async def _exchange_raw(
    requests: list[bytes], target: LocalTarget, observer: Observer, segment: int = 0
) -> list[tuple[int, bytes]]:
    """Write each raw request on one pool socket and read its response (keep-alive)."""
    relay_end, client_end = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=client_end)
    proxy = asyncio.create_task(PoolSocketProxy(reader, writer, target, observer).run())
    relay_reader, relay_writer = await asyncio.open_connection(sock=relay_end)
    strict = h11.Connection(h11.CLIENT)
    answers = []
    try:
        for raw in requests:
            # Let h11 know what was sent, so it can check the answers strictly.
            strict.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            strict.send(h11.EndOfMessage())
            step = segment or len(raw)
            for start in range(0, len(raw), step):  # segment > 0: arrive in small pieces
                relay_writer.write(raw[start : start + step])
                await relay_writer.drain()
            answers.append(await _read_response(strict, relay_reader))
        assert not proxy.done(), "the client closed a keep-alive pool socket"
    finally:
        relay_writer.close()
        async with asyncio.timeout(WAIT_S):
            await proxy  # the relay closed the socket: the proxy ends on its own
    return answers


def test_it_rewrites_the_host_of_every_request_on_a_keep_alive_socket_but_no_body():
    seen: list[bytes] = []
    observer = Observer()
    sneaky = b"POST /x HTTP/1.1\r\nHost: x\r\n\r\n"
    requests = [
        b"GET /one HTTP/1.1\r\nHost: name.localhost:8080\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        b"POST /two HTTP/1.1\r\nhost: name.localhost:8080\r\nContent-Length: %d\r\n\r\n%s"
        % (len(sneaky), sneaky),
        b"PUT /three HTTP/1.1\r\nHost: name.localhost:8080\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(sneaky), sneaky),
        b"GET /four HTTP/1.1\r\nHost: name.localhost:8080\r\n\r\n",
    ]

    async def main() -> list[tuple[int, bytes]]:
        server = await _capture_server(seen)
        port = server.sockets[0].getsockname()[1]
        target = LocalTarget(host="127.0.0.1", port=port, host_header="app.internal")
        async with server:
            return await _exchange_raw(requests, target, observer)

    answers = asyncio.run(main())
    assert answers == [(200, b"ok")] * 4
    assert len(seen) == 4
    for raw in seen:
        head, _, body = raw.partition(b"\r\n\r\n")
        hosts = [line for line in head.split(b"\r\n") if line.lower().startswith(b"host:")]
        assert hosts == [b"Host: app.internal"] or hosts == [b"host: app.internal"]
    assert seen[0].startswith(b"GET /one HTTP/1.1\r\n")
    assert b"X-Forwarded-For: 1.2.3.4" in seen[0]
    assert seen[1].endswith(b"\r\n\r\n" + sneaky)
    assert sneaky in seen[2]
    assert [(log.method, log.target, log.status) for log in observer.logs] == [
        ("GET", "/one", 200),
        ("POST", "/two", 200),
        ("PUT", "/three", 200),
        ("GET", "/four", 200),
    ]


def test_a_dead_local_app_gets_a_502_and_the_socket_stays_usable():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    observer = Observer()
    target = LocalTarget(host="127.0.0.1", port=holder.getsockname()[1])
    requests = [
        b"POST /a HTTP/1.1\r\nHost: n.localhost\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /b HTTP/1.1\r\nHost: n.localhost\r\n\r\n",
    ]
    try:
        answers = asyncio.run(_exchange_raw(requests, target, observer))
    finally:
        holder.close()
    assert [status for status, _ in answers] == [502, 502]
    assert b"did not answer" in answers[0][1]
    assert len(observer.unreachable) == 2
    assert observer.sent > 0 and observer.received > 0


def test_rewrite_host_replaces_only_host_headers():
    headers = [(b"Host", b"a.example"), (b"X-Host", b"keep"), (b"Accept", b"*/*")]
    assert rewrite_host(headers, "local.test") == [
        (b"Host", b"local.test"),
        (b"X-Host", b"keep"),
        (b"Accept", b"*/*"),
    ]
    assert rewrite_host(headers, None) is headers


def test_an_app_that_answers_before_reading_the_upload_leaves_the_socket_usable():
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
        await writer.drain()
        try:
            await asyncio.sleep(WAIT_S)  # reads no more: the upload stalls until the client lets go
        finally:
            writer.close()

    big = b"x" * (2 * 1024 * 1024)
    requests = [
        b"POST /up HTTP/1.1\r\nHost: n\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big),
        b"POST /up HTTP/1.1\r\nHost: n\r\nContent-Length: 3\r\n\r\nabc",
    ]

    async def main() -> list[tuple[int, bytes]]:
        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        target = LocalTarget(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
        async with server:
            return await _exchange_raw(requests, target, Observer())

    assert asyncio.run(main()) == [(413, b"big!"), (413, b"big!")]


def test_a_visitor_giving_up_frees_the_local_connection_at_once():
    async def main() -> None:
        local_closed = asyncio.Event()
        request_seen = asyncio.Event()

        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            request_seen.set()
            await reader.read()  # never answers; returns when the client closes
            local_closed.set()
            writer.close()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        target = LocalTarget(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
        relay_end, client_end = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=client_end)
        proxy = asyncio.create_task(PoolSocketProxy(reader, writer, target, Observer()).run())
        _, relay_writer = await asyncio.open_connection(sock=relay_end)
        async with server, asyncio.timeout(WAIT_S):
            relay_writer.write(b"GET /slow HTTP/1.1\r\nHost: n\r\n\r\n")
            await request_seen.wait()
            relay_writer.close()  # the relay gave up on this request
            await local_closed.wait()
            await proxy

    asyncio.run(main())


@settings(max_examples=25, deadline=None)
@given(
    bodies=st.lists(
        st.one_of(
            st.binary(max_size=3000),
            st.sampled_from([b"Host: evil\r\n", b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"]),
        ),
        min_size=1,
        max_size=4,
    ),
    segment=st.integers(min_value=1, max_value=700),
)
def test_framing_holds_for_any_bodies_and_any_segmentation(bodies: list[bytes], segment: int):
    seen: list[bytes] = []
    requests = [
        b"POST /%d HTTP/1.1\r\nHost: public.example\r\nContent-Length: %d\r\n\r\n%s"
        % (index, len(body), body)
        for index, body in enumerate(bodies)
    ]

    async def main() -> list[tuple[int, bytes]]:
        server = await _capture_server(seen)
        port = server.sockets[0].getsockname()[1]
        target = LocalTarget(host="127.0.0.1", port=port, host_header="app.internal")
        async with server:
            return await _exchange_raw(requests, target, Observer(), segment)

    assert asyncio.run(main()) == [(200, b"ok")] * len(bodies)
    for index, (raw, body) in enumerate(zip(seen, bodies, strict=True)):
        head, _, got = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"POST /%d HTTP/1.1\r\n" % index)
        assert b"\r\nHost: app.internal" in head and b"public.example" not in head
        assert got == body


def test_an_app_that_answers_and_closes_without_reading_the_upload_still_gets_its_answer_out():
    # Closing with unread bytes makes the app's kernel send a reset; the answer it sent
    # just before must still reach the visitor (http.server does this for a POST it
    # does not support).
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
        await writer.drain()
        writer.close()

    big = b"x" * (4 * 1024 * 1024)
    requests = [
        b"POST /up HTTP/1.1\r\nHost: n\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big),
        b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n",
    ]

    async def main() -> list[tuple[int, bytes]]:
        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        target = LocalTarget(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
        async with server:
            return await _exchange_raw(requests, target, Observer())

    assert asyncio.run(main()) == [(413, b"big!"), (413, b"big!")]


async def _counting_server(
    connections: list[list[bytes]], close_on_second: bool = False
) -> asyncio.Server:
    """A keep-alive app that records the requests of each connection (head + body).
    With `close_on_second`, it closes a connection as the second request on it arrives,
    unanswered: an app that timed out an idle connection just as it was reused."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen: list[bytes] = []
        connections.append(seen)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                if close_on_second and seen:
                    return
                fields = dict(
                    line.split(": ", 1)
                    for line in head.decode("latin-1").split("\r\n")[1:]
                    if ": " in line
                )
                body = await reader.readexactly(int(fields.get("Content-Length", "0")))
                seen.append(head + body)
                answer = b"conn %d req %d" % (len(connections), len(seen))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
                )
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_requests_on_a_pool_socket_share_one_kept_alive_local_connection():
    connections: list[list[bytes]] = []
    requests = [
        b"GET /a HTTP/1.1\r\nHost: n\r\n\r\n",
        b"GET /b HTTP/1.1\r\nHost: n\r\n\r\n",
        b"POST /c HTTP/1.1\r\nHost: n\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /d HTTP/1.1\r\nHost: n\r\n\r\n",
    ]

    async def main() -> list[tuple[int, bytes]]:
        server = await _counting_server(connections)
        target = LocalTarget(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
        async with server:
            return await _exchange_raw(requests, target, Observer())

    assert asyncio.run(main()) == [
        (200, b"conn 1 req 1"),
        (200, b"conn 1 req 2"),
        (200, b"conn 1 req 3"),
        # Never reused after a body: the app may not have read it (see ready_for_next).
        (200, b"conn 2 req 1"),
    ]
    assert len(connections) == 2


def test_a_kept_connection_the_app_drops_as_it_is_reused_costs_the_visitor_nothing():
    connections: list[list[bytes]] = []
    requests = [
        b"GET /a HTTP/1.1\r\nHost: n\r\n\r\n",
        b"GET /b HTTP/1.1\r\nHost: n\r\n\r\n",
        b"PUT /c HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\n\r\nhello",
    ]
    observer = Observer()

    async def main() -> list[tuple[int, bytes]]:
        server = await _counting_server(connections, close_on_second=True)
        target = LocalTarget(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
        async with server:
            return await _exchange_raw(requests, target, observer)

    assert asyncio.run(main()) == [
        (200, b"conn 1 req 1"),
        (200, b"conn 2 req 1"),
        (200, b"conn 3 req 1"),
    ]
    # Each request was sent once more on a fresh connection, body and all.
    assert [seen[0].split(b" ", 2)[1] for seen in connections] == [b"/a", b"/b", b"/c"]
    assert connections[2][0].endswith(b"\r\n\r\nhello")
    assert observer.unreachable == []


def test_a_post_is_never_sent_twice_when_a_kept_connection_drops():
    """RFC 9110 section 9.2.2: the app may have acted on it; the visitor gets a 502 instead."""
    connections: list[list[bytes]] = []
    requests = [
        b"GET /a HTTP/1.1\r\nHost: n\r\n\r\n",
        b"POST /pay HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\n\r\nhello",
    ]

    async def main() -> list[tuple[int, bytes]]:
        server = await _counting_server(connections, close_on_second=True)
        target = LocalTarget(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
        async with server:
            return await _exchange_raw(requests, target, Observer())

    answers = asyncio.run(main())
    assert answers[0] == (200, b"conn 1 req 1")
    assert answers[1][0] == 502
    assert len(connections) == 1  # no second connection carried the POST again


def test_a_storm_of_interim_answers_is_cut_short_with_a_502_and_a_fresh_connection():
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                if len(connections) == 1:  # the first connection answers with a storm
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 1000)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    async def main() -> tuple[int, int, tuple[int, bytes]]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        target = LocalTarget(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
        relay_end, client_end = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=client_end)
        proxy = asyncio.create_task(PoolSocketProxy(reader, writer, target, Observer()).run())
        relay_reader, relay_writer = await asyncio.open_connection(sock=relay_end)
        conn = h11.Connection(h11.CLIENT)
        interim = status = 0
        try:
            async with server:
                request = h11.Request(method="GET", target="/", headers=[("Host", "n")])
                relay_writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
                async with asyncio.timeout(WAIT_S):
                    while not status:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(await relay_reader.read(65536))
                        elif isinstance(event, h11.InformationalResponse):
                            interim += 1
                        elif isinstance(event, h11.Response):
                            status = event.status_code
                    while not isinstance(event, h11.EndOfMessage):
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(await relay_reader.read(65536))
                conn.start_next_cycle()
                relay_writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
                second = await _read_response(conn, relay_reader)
        finally:
            relay_writer.close()
            async with asyncio.timeout(WAIT_S):
                await proxy
        return interim, status, second

    interim, status, second = asyncio.run(main())

    assert (interim, status) == (8, 502)
    assert second == (200, b"ok")  # on a new connection: nothing of the storm is left
    assert len(connections) == 2


def test_a_request_smuggled_in_a_body_the_app_never_read_is_not_answered_to_the_next_visitor():
    """The app answers the POST at once, then reads its body as a request of its own."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                tag = head.split(b" ", 2)[1].strip(b"/")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(tag), tag))
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    smuggled = b"GET /mallory HTTP/1.1\r\nHost: n\r\n\r\n"
    requests = [
        b"POST /alice HTTP/1.1\r\nHost: n\r\nContent-Length: %d\r\n\r\n%s"
        % (len(smuggled), smuggled),
        b"GET /bob HTTP/1.1\r\nHost: n\r\n\r\n",
        b"GET /carol HTTP/1.1\r\nHost: n\r\n\r\n",
    ]

    async def main() -> list[tuple[int, bytes]]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        target = LocalTarget(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
        async with server:
            return await _exchange_raw(requests, target, Observer())

    assert asyncio.run(main()) == [(200, b"alice"), (200, b"bob"), (200, b"carol")]


def test_a_kept_connection_reports_stray_bytes_and_its_end_while_idle_and_right_before_reuse():
    """tunnelsite_client/local.py on real TCP: what the proxy learns about an idle kept
    connection."""
    from tunnelsite_client.idle_state import CLOSED, QUIET, STRAY
    from tunnelsite_client.local import connect

    async def scenario() -> None:
        accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

        async def keep(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await accepted.put(writer)

        server = await asyncio.start_server(keep, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            for app_does, expected in (("writes", STRAY), ("closes", CLOSED)):
                conn = await connect("127.0.0.1", port)
                app = await asyncio.wait_for(accepted.get(), WAIT_S)
                assert conn.idle_state() == QUIET  # nothing yet: it may be reused
                woken = asyncio.Event()
                conn.park(woken.set)
                if app_does == "writes":
                    app.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # for nobody
                else:
                    app.close()
                await asyncio.wait_for(woken.wait(), WAIT_S)  # told at once, while idle
                assert conn.idle_state() == expected  # and the check before reuse agrees
                conn.close()
                app.close()
        finally:
            server.close()

    asyncio.run(scenario())
