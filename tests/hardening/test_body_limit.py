"""Request bodies over the limit are refused before they are read.

Twisted spools a whole request body to disk before the relay sees it; without a limit, one
visitor could fill the relay's disk. A declared Content-Length over RELAY_MAX_BODY_BYTES gets
413 as soon as the head is in (no 100 Continue, nothing read), and a chunked body is cut
with 413 the moment it passes the limit. Nothing of either reaches the tunnel.
"""

from __future__ import annotations

import pytest
from harness.raw_tunnel import RawTunnel

LIMIT = 100_000


@pytest.fixture(scope="module")
def hardening_relay(module_relay_factory):
    return module_relay_factory(RELAY_MAX_BODY_BYTES=LIMIT, RELAY_RESPONSE_TIMEOUT_S=2)


def test_a_declared_length_over_the_limit_is_refused_before_any_body(raw_tunnel: RawTunnel):
    head = (
        f"POST /upload HTTP/1.1\r\nHost: {raw_tunnel.host}\r\n"
        f"Content-Length: {LIMIT + 1}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()

    outcome = raw_tunnel.send(head, method="POST")

    assert outcome.answer.status == 413  # not 100 Continue: the body is never asked for
    assert b"larger than" in outcome.answer.body
    assert outcome.forwarded is None
    raw_tunnel.assert_nothing_was_forwarded()


def test_a_body_of_exactly_the_limit_is_forwarded_whole(raw_tunnel: RawTunnel):
    body = b"x" * LIMIT
    raw = (
        f"POST /upload HTTP/1.1\r\nHost: {raw_tunnel.host}\r\nContent-Length: {LIMIT}\r\n\r\n"
    ).encode() + body

    outcome = raw_tunnel.send(raw, method="POST")

    assert outcome.answer.status == 200
    assert outcome.forwarded is not None
    assert outcome.forwarded.header("content-length") == str(LIMIT)


def test_a_chunked_body_is_cut_when_it_passes_the_limit(raw_tunnel: RawTunnel):
    chunk = b"y" * 40_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2))
    # 80,000 bytes so far: under the limit, so the relay is still reading; the third
    # chunk takes it over.
    head = (
        f"POST /upload HTTP/1.1\r\nHost: {raw_tunnel.host}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    raw = head + chunks + b"%x\r\n%s\r\n" % (len(chunk), chunk)

    outcome = raw_tunnel.send(raw, method="POST")

    assert outcome.answer.status == 413
    assert outcome.forwarded is None
    raw_tunnel.assert_nothing_was_forwarded()
