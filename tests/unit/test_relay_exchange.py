"""The exchange skeleton (relay/proxy/exchange.py) fed events and bytes, without sockets:
how the visitor's request is framed upstream, what the visitor gets of the answer (1xx
skipped, bodies whole or streamed), and how a bad or late answer ends the exchange."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import pytest
from django.test import override_settings
from harness.fake_upstream import FakeUpstream

from relay.pool.errors import PoolError
from relay.proxy.exchange import MAX_INFORMATIONAL, Progress, build_request, exchange


def scope(method: str = "GET", path: str = "/") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"app.localhost")],
    }


class Visitor:
    """The ASGI side: what the relay received from the visitor, and what it sent back."""

    def __init__(self, *more_body: bytes) -> None:
        self.sent: list[dict[str, Any]] = []
        self._more = list(more_body)

    async def receive(self) -> dict[str, Any]:
        body = self._more.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self._more)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


def run(
    upstream: FakeUpstream,
    visitor: Visitor,
    *,
    method: str = "GET",
    first: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    timeout: float = 5.0,
    **options: Any,
) -> tuple[BaseException | None, Progress]:
    first = first or {"type": "http.request", "body": b"", "more_body": False}
    request_headers = [(b"host", b"app.localhost"), *(headers or [])]
    head = build_request(scope(method), first, request_headers, None, False)
    progress = Progress()

    async def go() -> BaseException | None:
        return await exchange(
            upstream, visitor.receive, visitor.send, None, head, first, progress, timeout,
            timeout, **options,
        )  # fmt: skip

    return asyncio.run(go()), progress


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def test_a_get_goes_upstream_without_a_body_and_its_answer_reaches_the_visitor() -> None:
    upstream, visitor = FakeUpstream(OK), Visitor()
    failure, progress = run(upstream, visitor)
    head, body = upstream.request()
    assert failure is None
    assert (head.method, head.target, body) == (b"GET", b"/", b"")
    assert dict(head.headers).get(b"content-length") is None  # a GET says nothing of a body
    assert (visitor.status, visitor.body) == (200, b"hello")
    assert visitor.sent[-1]["more_body"] is False
    assert (progress.started, progress.sent) == (True, 5)


def test_an_empty_post_still_says_content_length_zero() -> None:
    upstream = FakeUpstream(OK)
    run(upstream, Visitor(), method="POST")
    head, body = upstream.request()
    assert dict(head.headers)[b"content-length"] == b"0" and body == b""


def test_a_body_in_pieces_goes_upstream_chunked_and_is_counted() -> None:
    first = {"type": "http.request", "body": b"abc", "more_body": True}
    upstream = FakeUpstream(OK)
    failure, progress = run(upstream, Visitor(b"def", b"gh"), method="POST", first=first)
    head, body = upstream.request()
    assert failure is None
    assert dict(head.headers)[b"transfer-encoding"] == b"chunked"
    assert body == b"abcdefgh" and progress.body == 8
    assert upstream.drains == 2  # waited for the upstream to take each further piece


def test_informational_answers_are_skipped_and_the_real_one_is_sent() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    upstream, visitor = FakeUpstream(interim + OK), Visitor()
    failure, _ = run(upstream, visitor)
    assert failure is None and (visitor.status, visitor.body) == (200, b"hello")


def test_endless_informational_answers_are_a_failure_before_any_head() -> None:
    interim = b"HTTP/1.1 102 Processing\r\n\r\n" * (MAX_INFORMATIONAL + 1)
    upstream, visitor = FakeUpstream(interim + OK), Visitor()
    failure, progress = run(upstream, visitor)
    assert isinstance(failure, PoolError)
    assert visitor.sent == [] and not progress.started  # the caller answers 502


def test_a_chunked_answer_arriving_slowly_is_streamed_and_ends_with_the_last_piece() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    upstream = FakeUpstream(later=[answer[:50], answer[50:60], answer[60:]])
    visitor = Visitor()
    failure, progress = run(upstream, visitor)
    assert failure is None and upstream.waits >= 3
    assert visitor.status == 200 and visitor.body == b"abcde" and progress.sent == 5
    assert [m["more_body"] for m in visitor.sent[1:]][-1] is False


def test_an_early_answer_before_the_body_is_read_still_reaches_the_visitor() -> None:
    early = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"
    first = {"type": "http.request", "body": b"x" * 10, "more_body": False}
    upstream, visitor = FakeUpstream(early), Visitor()
    failure, progress = run(upstream, visitor, method="POST", first=first)
    assert failure is None
    assert (visitor.status, visitor.body) == (413, b"big") and progress.body == 10


def test_a_malformed_answer_is_a_failure_and_nothing_reaches_the_visitor() -> None:
    upstream, visitor = FakeUpstream(b"THIS IS NOT HTTP AT ALL\r\n\r\n"), Visitor()
    failure, progress = run(upstream, visitor)
    assert isinstance(failure, (PoolError, h11.ProtocolError))
    assert visitor.sent == [] and not progress.started


def test_an_answer_with_both_framings_is_refused() -> None:
    both = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    upstream, visitor = FakeUpstream(both), Visitor()
    failure, _ = run(upstream, visitor)
    assert isinstance(failure, PoolError) and visitor.sent == []


def test_an_answer_cut_mid_body_ends_the_visitors_response_unfinished() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"
    upstream, visitor = FakeUpstream(cut, closes=True), Visitor()
    failure, progress = run(upstream, visitor)
    assert isinstance(failure, PoolError)
    assert progress.started and visitor.status == 200
    assert all(m.get("more_body", True) for m in visitor.sent[1:])  # never a clean end


def test_no_answer_within_the_deadline_is_a_timeout() -> None:
    upstream, visitor = FakeUpstream(), Visitor()
    failure, progress = run(upstream, visitor, timeout=0.05)
    assert isinstance(failure, TimeoutError)
    assert visitor.sent == [] and not progress.started  # the caller answers 504


def test_a_peer_exchange_drains_the_request_and_sees_the_head_first() -> None:
    heads: list[int] = []
    upstream, visitor = FakeUpstream(OK), Visitor()
    failure, _ = run(upstream, visitor, drain=True, on_head=lambda r: heads.append(r.status_code))
    assert failure is None and upstream.drains == 1 and heads == [200]


@pytest.mark.parametrize("over", [0, 1])
def test_a_head_is_measured_by_its_fields_and_refused_one_byte_past_the_limit(over: int) -> None:
    """Each field counts its name, its value and 4 bytes (": " and CRLF), however it was
    spelled: `X-A:b` on the wire counts as `X-A: b`. The limit is RELAY_MAX_HEADER_BYTES as
    it is now (a changed setting is followed at once)."""
    fields = [b"Content-Length: 5", b"X-A:" + b"b" * (100 - (14 + 1 + 4) - (3 + 4) + over)]
    answer = b"HTTP/1.1 200 OK\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\nhello"
    for limit, refused in ((100, bool(over)), (101, False)):
        with override_settings(RELAY_MAX_HEADER_BYTES=limit):
            upstream, visitor = FakeUpstream(answer), Visitor()
            failure, _ = run(upstream, visitor)
        if refused:
            assert isinstance(failure, PoolError) and visitor.sent == []
        else:
            assert failure is None and (visitor.status, visitor.body) == (200, b"hello")
