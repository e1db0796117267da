"""relay/edge/reply.py against Daphne's own reply path: for any response, the bytes a visitor
gets, the request's state after it, and the refusals are the same.

Two RelayWebRequests on two Twisted HTTP channels: one answered through Daphne's
`Server.handle_reply` (the path every response took before), one through `relay_send`. The
transports are Twisted's in-memory ones, so `reply.write` takes its queued branch here;
its socket branch is what every end-to-end test's response goes through
(tests/sockets/test_direct_reply_socket.py tests its partial sends)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel

from relay.edge.server import RelayHTTPFactory, RelayServer, RelayWebRequest


class _Server(RelayServer):
    """A RelayServer that is never run: what its requests need of it."""

    def __init__(self, server_name: str = "daphne", action_logger: Any = None) -> None:
        super().__init__(application=None, endpoints=["unused"], server_name=server_name)
        self.connections = {}
        self.action_logger = action_logger


def _request(
    server: _Server, version: bytes, method: bytes, close: bool
) -> tuple[RelayWebRequest, StringTransport]:
    # Twisted's channel, without the relay's (its connection limits and deadlines are not
    # what is compared here) and without timers (no reactor runs).
    channel = HTTPChannel()
    channel.factory = RelayHTTPFactory(server)
    channel.timeOut = None
    transport = StringTransport()
    channel.makeConnection(transport)
    channel._savedTimeOut = None
    request = RelayWebRequest(channel)
    request.clientproto, request.method, request.uri = version, method, b"/x"
    if close:  # what Twisted's persistence check sets for `Connection: close`
        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
    channel.requests.append(request)
    return request, transport


def _run(send: Any, messages: list[dict[str, Any]]) -> str:
    """Send each message; the exception's type and text when one is refused, else ""."""

    async def go() -> str:
        for message in messages:
            try:
                await send(message)
            except Exception as exc:  # noqa: BLE001  (compared between both paths)
                return f"{type(exc).__name__}: {exc}"
        return ""

    return asyncio.run(go())


def _both(
    messages: list[dict[str, Any]],
    version: bytes = b"HTTP/1.1",
    method: bytes = b"GET",
    close: bool = False,
    server_name: str = "daphne",
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    results = []
    for direct in (False, True):
        server = _Server(server_name)
        request, transport = _request(server, version, method, close)
        send = (
            request.relay_send if direct else (lambda m, r=request, s=server: s.handle_reply(r, m))
        )
        error = _run(send, messages)
        results.append(
            (
                transport.value(),
                error,
                bool(request.finished),
                request.code,
                request.sentLength,
                request in server.connections and "disconnected" in server.connections[request],
            )
        )
    return results[0], results[1]


_names = st.sampled_from(
    [
        b"content-type",
        b"Content-Length",
        b"x-a",
        b"set-cookie",
        b"etag",
        b"SERVER",
        b"www-authenticate",
    ]
) | st.binary(min_size=0, max_size=6)
_values = st.binary(max_size=12) | st.sampled_from([b"a\r\nb", b"x\n", b"\r", b"ok"])
_headers = st.lists(st.tuples(_names, _values), max_size=6)


@settings(max_examples=400)
@given(
    status=st.sampled_from([200, 201, 204, 206, 299, 304, 404, 431, 599, 100, 101, 199, 700]),
    headers=_headers,
    length=st.booleans(),
    bodies=st.lists(st.binary(max_size=40), min_size=1, max_size=3),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
    method=st.sampled_from([b"GET", b"HEAD", b"POST"]),
    close=st.booleans(),
    server_name=st.sampled_from(["daphne", ""]),
)
def test_any_response_reaches_the_visitor_as_daphne_wrote_it(
    status: int,
    headers: list[tuple[bytes, bytes]],
    length: bool,
    bodies: list[bytes],
    version: bytes,
    method: bytes,
    close: bool,
    server_name: str,
) -> None:
    if length:
        headers = [*headers, (b"content-length", str(sum(map(len, bodies))).encode())]
    messages: list[dict[str, Any]] = [
        {"type": "http.response.start", "status": status, "headers": headers}
    ]
    for i, body in enumerate(bodies):
        last = i == len(bodies) - 1
        messages.append({"type": "http.response.body", "body": body, "more_body": not last})
    daphne, direct = _both(messages, version, method, close, server_name)
    assert direct == daphne


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.response.body", "body": b"x"}],  # a body before the start
        [
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]},
            {"type": "http.response.start", "status": 200, "headers": []},  # started twice
        ],
        [{"type": "http.response.start", "status": 200, "headers": [("str", b"1")]}],
        [{"type": "http.response.start", "status": 200, "headers": [(b"content-length", "1")]}],
        [{"type": "http.response.start", "headers": [(b"content-length", b"1")]}],  # no status
        [
            {"type": "http.response.start", "status": "200", "headers": []},
            {"type": "http.response.body"},
        ],
        [{"type": "http.response.trailers"}],
        [
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]},
            {"type": "http.response.body", "body": b"ok"},
            {"type": "http.response.body", "body": b"again"},  # after the end
        ],
        [
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]},
            {"type": "http.response.body", "body": b"o", "more_body": True},
            {"type": "http.response.start", "status": 500, "headers": []},  # mid-body
        ],
        [{"type": "http.response.start", "status": 200, "headers": [(b"bad name", b"1")]}],
    ],
)
def test_messages_out_of_order_or_malformed_get_daphnes_answer(
    messages: list[dict[str, Any]],
) -> None:
    daphne, direct = _both(messages)
    assert direct == daphne
    assert daphne[1] or daphne[0]  # each case is refused or answered: it tests something


def test_the_common_response_is_one_write_with_its_body() -> None:
    server = _Server()
    request, transport = _request(server, b"HTTP/1.1", b"GET", False)
    writes: list[bytes] = []
    transport.write = writes.append  # type: ignore[method-assign]  # count the writes
    _run(
        request.relay_send,
        [
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]},
            {"type": "http.response.body", "body": b"ok"},
        ],
    )
    assert writes == [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: daphne\r\n\r\nok"]
    assert request.finished


def test_an_action_logger_gets_daphnes_path() -> None:
    logged: list[Any] = []
    server = _Server(action_logger=lambda *a: logged.append(a))
    request, _ = _request(server, b"HTTP/1.1", b"GET", False)
    _run(
        request.relay_send,
        [
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]},
            {"type": "http.response.body", "body": b"ok"},
        ],
    )
    assert [(entry[1], entry[2]["size"]) for entry in logged] == [("complete", 2)]
