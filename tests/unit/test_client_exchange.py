"""The exchange without sockets: bytes fed to the pool side, a scripted fake local app.

The relay's side is an `asyncio.StreamReader` fed the bytes a relay would write and a
writer that keeps what the client wrote back; the local app is reached through the
exchange's `dial` seam and answers from a script. Every test reads the answer the relay
would get with h11 and checks framing, the keep-alive decision, the resend policy, the
1xx cap and what a malformed local answer turns into.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import pytest
from harness.client_observer import Observer

from tunnelsite_client.exchange import CLOSED_UNANSWERED, LocalTarget, PoolSocketProxy
from tunnelsite_client.idle_state import CLOSED, QUIET, STRAY
from tunnelsite_client.keepalive import KeepAlive, ready_for_next
from tunnelsite_client.replay import may_resend
from tunnelsite_client.target import error_response


class PoolWriter:
    """Stands in for the pool socket's StreamWriter: keeps what the client writes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> None:
        return None


# What the app does with the request a connection is asked: the bytes it answers with, and
# whether it then closes; None: it closes without a word (as an app that dropped an idle
# keep-alive connection does).
Reply = tuple[bytes, bool] | None


@dataclass(eq=False)
class FakeLocalConnection:
    """The local-connection face of client/tunnelsite_client/local_tcp.py, driven by a script."""

    app: FakeApp
    received: list[h11.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    inbox: bytearray = field(default_factory=bytearray)
    eof: bool = False
    closed: bool = False
    parked: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.parser = h11.Connection(h11.SERVER)
        self.arrived = asyncio.Event()

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("closed")
        self.parser.receive_data(data)
        while (event := self.parser.next_event()) is not h11.NEED_DATA:
            if isinstance(event, h11.Request):
                self.received.append(event)
                self.bodies.append(b"")
            elif isinstance(event, h11.Data):
                self.bodies[-1] += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._answer()
                if self.parser.our_state is h11.DONE:
                    self.parser.start_next_cycle()
                break
            else:
                break

    def _answer(self) -> None:
        reply = self.app.replies.popleft()
        if reply is None:
            self.eof = True
        else:
            data, close = reply
            self.inbox += data
            self.eof = close
            # The parser tracks our side too: mark the answer sent so it can cycle.
            self.parser = h11.Connection(h11.SERVER)
        self.arrived.set()

    async def drain(self) -> None:
        pass

    async def read(self, limit: int) -> bytes:
        while not self.inbox and not self.eof:
            self.arrived.clear()
            await self.arrived.wait()
        data = bytes(self.inbox[:limit])
        del self.inbox[:limit]
        return data

    def is_closing(self) -> bool:
        return self.closed

    def park(self, on_idle: Callable[[], None]) -> None:
        self.parked = on_idle

    def unpark(self) -> None:
        self.parked = None

    def idle_state(self) -> str:
        if self.inbox:
            return STRAY
        return CLOSED if self.closed or self.eof else QUIET

    def close(self) -> None:
        self.closed = True


class FakeApp:
    def __init__(self, *replies: Reply) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.connections: list[FakeLocalConnection] = []

    async def dial(self, host: str, port: int, ssl_context: object, addresses: object):
        conn = FakeLocalConnection(self)
        self.connections.append(conn)
        return conn

    @property
    def requests(self) -> list[h11.Request]:
        return [r for conn in self.connections for r in conn.received]


def ok(body: bytes = b"ok", *extra: str) -> tuple[bytes, bool]:
    head = "".join(f"{line}\r\n" for line in extra)
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body, False)


def status(code: int, reason: str) -> tuple[bytes, bool]:
    return (f"HTTP/1.1 {code} {reason}\r\n\r\n".encode(), False)


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    interim: list[int]


def relay_requests(
    *raw: bytes, app: FakeApp, host_header: str | None = None
) -> tuple[list[Answer], PoolSocketProxy, Observer]:
    """Feed the requests on one pool socket (then its end) and read every answer."""
    observer = Observer()

    async def go() -> tuple[PoolWriter, PoolSocketProxy]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"".join(raw))
        reader.feed_eof()
        writer = PoolWriter()
        target = LocalTarget(host="app.test", port=8000, host_header=host_header)
        proxy = PoolSocketProxy(reader, writer, target, observer, dial=app.dial)
        async with asyncio.timeout(10):
            await proxy.run()
        return writer, proxy

    writer, proxy = asyncio.run(go())
    relay = h11.Connection(h11.CLIENT)
    answers: list[Answer] = []
    relay.receive_data(bytes(writer.data))
    relay.receive_data(b"")
    for _ in raw:
        relay.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        relay.send(h11.EndOfMessage())
        interim: list[int] = []
        answer = Answer(0, {}, b"", interim)
        while True:
            event = relay.next_event()
            if isinstance(event, h11.InformationalResponse):
                interim.append(event.status_code)
            elif isinstance(event, h11.Response):
                answer.status, answer.headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                answer.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"the answer ended early: {event!r}")
        answers.append(answer)
        if relay.our_state is h11.DONE and relay.their_state is h11.DONE:
            relay.start_next_cycle()
    return answers, proxy, observer


GET = b"GET /a HTTP/1.1\r\nHost: name.relay.test\r\n\r\n"
HEAD = b"HEAD /a HTTP/1.1\r\nHost: name.relay.test\r\n\r\n"
POST = b"POST /a HTTP/1.1\r\nHost: name.relay.test\r\nContent-Length: 3\r\n\r\nabc"
POST_WITH_KEY = (
    b"POST /a HTTP/1.1\r\nHost: name.relay.test\r\nIdempotency-Key: k1\r\n"
    b"Content-Length: 3\r\n\r\nabc"
)


# -- framing -----------------------------------------------------------------------------


def test_an_answer_is_framed_for_the_relay_without_the_apps_connection_headers():
    app = FakeApp(ok(b"hello", "Connection: keep-alive", "Keep-Alive: timeout=5", "X-App: 1"))
    [answer], _, observer = relay_requests(GET, app=app)
    assert (answer.status, answer.body) == (200, b"hello")
    assert answer.headers[b"x-app"] == b"1"
    assert b"connection" not in answer.headers and b"keep-alive" not in answer.headers
    assert [(log.method, log.target, log.status) for log in observer.logs] == [("GET", "/a", 200)]


def test_the_body_reaches_the_app_whole_and_local_host_rewrites_host():
    app = FakeApp(ok())
    relay_requests(POST, app=app, host_header="local.test")
    [conn] = app.connections
    assert conn.bodies == [b"abc"]
    assert dict(conn.received[0].headers)[b"host"] == b"local.test"


def test_a_chunked_answer_is_passed_on_chunk_for_chunk_in_content():
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    [answer], _, _ = relay_requests(GET, app=FakeApp((chunked, False)))
    assert answer.body == b"abcde"


# -- keep-alive: ready_for_next ----------------------------------------------------------


def test_a_clean_answer_keeps_the_connection_for_the_next_request():
    app = FakeApp(ok(b"1"), ok(b"2"))
    answers, proxy, _ = relay_requests(GET, GET, app=app)
    assert [a.body for a in answers] == [b"1", b"2"]
    assert len(app.connections) == 1 and proxy.requests == 2


@pytest.mark.parametrize(
    ("first", "reply"),
    [
        (HEAD, ok(b"")),  # a body after HEAD is where buggy apps go wrong
        (GET, status(204, "No Content")),
        (GET, status(304, "Not Modified")),
        (POST, ok()),  # the app may not have read the body
    ],
    ids=["after-HEAD", "after-204", "after-304", "after-a-request-body"],
)
def test_some_answers_never_let_the_connection_be_reused(first, reply):
    app = FakeApp(reply, ok(b"2"))
    answers, _, _ = relay_requests(first, GET, app=app)
    assert answers[1].body == b"2"
    assert len(app.connections) == 2


def test_bytes_past_the_answer_turn_keep_alive_off_for_the_tunnel():
    app = FakeApp((ok(b"1")[0] + b"HTTP/1.1 200 OK\r\n", False), ok(b"2"))
    answers, proxy, observer = relay_requests(GET, GET, app=app)
    assert [a.body for a in answers] == [b"1", b"2"]
    assert len(app.connections) == 2
    assert proxy.target.keepalive.distrusted
    assert observer.keepalive_off_reasons == ["it sent more after a complete answer"]


def _finished_exchange(answer: bytes, method: str = "GET") -> h11.Connection:
    local = h11.Connection(h11.CLIENT)
    local.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
    local.send(h11.EndOfMessage())
    local.receive_data(answer)
    while not isinstance(local.next_event(), h11.EndOfMessage):
        pass
    return local


def test_ready_for_next_wants_a_clean_end_and_nothing_else():
    clean = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert ready_for_next(_finished_exchange(clean), body_size=0, ambiguous=False)
    assert not ready_for_next(_finished_exchange(clean), body_size=3, ambiguous=False)
    assert not ready_for_next(_finished_exchange(clean), body_size=0, ambiguous=True)
    assert not ready_for_next(_finished_exchange(clean + b"extra"), body_size=0, ambiguous=False)
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    assert not ready_for_next(_finished_exchange(closing), body_size=0, ambiguous=False)


def test_keepalive_distrust_is_sticky_and_reported_once():
    keepalive = KeepAlive()
    assert keepalive.distrust() is True
    assert keepalive.distrust() is False
    assert not keepalive.enabled
    assert KeepAlive(enabled=False).distrust() is False


# -- the resend policy: may_resend -------------------------------------------------------


def _request(method: str, *headers: tuple[str, str]) -> h11.Request:
    return h11.Request(method=method, target="/", headers=[("Host", "a"), *headers])


def test_may_resend_only_what_is_harmless_to_repeat():
    assert all(may_resend(_request(m)) for m in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
    assert not may_resend(_request("POST"))
    assert not may_resend(_request("PATCH"))
    assert may_resend(_request("POST", ("Idempotency-Key", "k")))
    assert may_resend(_request("PATCH", ("X-Idempotency-Key", "k")))


def test_a_get_that_finds_the_kept_connection_dead_is_sent_again_on_a_fresh_one():
    app = FakeApp(ok(b"1"), None, ok(b"again"))
    answers, _, observer = relay_requests(GET, GET, app=app)
    assert [a.body for a in answers] == [b"1", b"again"]
    assert len(app.connections) == 2
    assert observer.unreachable == []


def test_a_post_with_an_idempotency_key_is_sent_again_with_its_body():
    app = FakeApp(ok(b"1"), None, ok(b"again"))
    answers, _, _ = relay_requests(GET, POST_WITH_KEY, app=app)
    assert answers[1].body == b"again"
    assert app.connections[1].bodies == [b"abc"]


def test_a_plain_post_on_a_dead_kept_connection_is_a_502_never_repeated():
    app = FakeApp(ok(b"1"), None, ok(b"must not be asked"))
    answers, _, observer = relay_requests(GET, POST, app=app)
    assert answers[1].status == 502
    assert answers[1].headers[b"x-tunnelsite-client-error"] == b"local-app-unreachable"
    assert len(app.connections) == 1 and len(app.replies) == 1
    # A hang-up with an answer due is said as such, and is no reason to stop keeping
    # connections: it is not bytes that are not HTTP.
    assert observer.unreachable[0] == CLOSED_UNANSWERED
    assert observer.keepalive_off_reasons == []


# -- 1xx cap and malformed answers -------------------------------------------------------


def test_interim_answers_are_passed_on_up_to_the_cap():
    early = status(103, "Early Hints")[0] * 8
    [answer], _, _ = relay_requests(GET, app=FakeApp((early + ok(b"x")[0], False)))
    assert answer.interim == [103] * 8 and (answer.status, answer.body) == (200, b"x")


def test_one_interim_answer_past_the_cap_is_a_502():
    early = status(103, "Early Hints")[0] * 9
    [answer], _, observer = relay_requests(GET, app=FakeApp((early + ok(b"x")[0], False)))
    assert answer.status == 502
    assert observer.unreachable == ["more than 8 interim (1xx) answers"]


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 2000 Huge\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
    ],
    ids=["not-http", "two-lengths", "bad-status", "bad-header"],
)
def test_a_malformed_local_answer_is_a_502_for_the_visitor(garbage):
    [answer], _, observer = relay_requests(GET, app=FakeApp((garbage, True)))
    assert answer.status == 502
    assert b"did not answer: bad HTTP from the local app" in answer.body
    assert observer.unreachable and observer.unreachable[0].startswith("bad HTTP")


def test_an_app_that_closes_without_answering_is_a_502():
    [answer], _, _ = relay_requests(GET, app=FakeApp(None))
    assert answer.status == 502


def test_the_error_page_escapes_the_reason_and_frames_itself():
    target = LocalTarget(host="app.test", port=8000)
    response, body = error_response(504, "<script>", target)
    headers = dict(response.headers)
    assert (response.status_code, response.reason) == (504, b"Gateway Timeout")
    assert int(headers[b"content-length"]) == len(body)
    assert b"&lt;script&gt;" in body and b"<script>" not in body
    assert headers[b"cache-control"] == b"no-store"
