"""Request smuggling and malformed framing from visitors (RFC 9112 sections 2-7, RFC 9110).

Every request here is sent as exact bytes to a real relay with a fake tunnel client holding
the only pool socket. An ambiguous or malformed request gets a 400 and nothing reaches the
tunnel (the next thing the tunnel sees is a fresh canary request); a request the relay may
safely normalise reaches the tunnel with exactly one, unambiguous framing.
"""

from __future__ import annotations

import ssl

import pytest
from harness.raw_tunnel import RawTunnel

from relay.protocol import DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_COUNT

# Request heads that start like an ordinary request to the tunnel; `{host}` is its Host.
POST = b"POST / HTTP/1.1\r\nHost: {host}\r\n"
GET = b"GET / HTTP/1.1\r\nHost: {host}\r\n"
# A chunked body up to its last chunk, before the trailer section; a request to hide in it.
LAST_CHUNK = POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n"

REJECTED = [
    (
        "content-length-and-chunked",
        POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "chunked-and-content-length",
        POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ),
    (
        "two-different-content-lengths",
        POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    ("two-equal-content-lengths", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("content-length-list", POST + b"Content-Length: 5, 5\r\n\r\nhello"),
    ("content-length-plus-sign", POST + b"Content-Length: +5\r\n\r\nhello"),
    ("content-length-negative", POST + b"Content-Length: -1\r\n\r\n"),
    ("content-length-hex", POST + b"Content-Length: 0x5\r\n\r\nhello"),
    ("content-length-inner-space", POST + b"Content-Length: 1 0\r\n\r\nhello"),
    ("content-length-empty", POST + b"Content-Length:\r\n\r\n"),
    ("chunked-then-identity", POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    ("identity-only", POST + b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"),
    ("gzip-coding", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    (
        "chunked-twice",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    ("xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("space-before-colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("tab-before-colon", POST + b"Content-Length\t: 5\r\n\r\nhello"),
    ("obs-fold", GET + b"X-Folded: one\r\n two\r\n\r\n"),
    ("obs-fold-into-transfer-encoding", POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
    (
        "line-starting-with-space-after-request-line",
        b"GET / HTTP/1.1\r\n Host: {host}\r\nHost: {host}\r\n\r\n",
    ),
    ("nul-in-a-value", GET + b"X-A: a\x00b\r\n\r\n"),
    ("bare-cr-in-a-value", GET + b"X-A: a\rb\r\n\r\n"),
    ("bare-lf-in-a-value", GET + b"X-A: a\nX-B: b\r\n\r\n"),
    ("nul-in-a-name", GET + b"X-\x00A: a\r\n\r\n"),
    ("no-colon", GET + b"NoColonHere\r\n\r\n"),
    ("empty-name", GET + b": value\r\n\r\n"),
    ("bare-lf-line-endings", b"GET / HTTP/1.1\nHost: {host}\n\n"),
    # Found by test_properties: refused at once, not only when a following line arrives.
    ("lf-leading-a-header-line", b"GET / HTTP/1.0\r\n\nHost: {host}\x00\n\r\n"),
    ("bare-cr-in-request-line", b"GET /\rx HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    ("two-spaces-in-request-line", b"GET  / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    ("unknown-version", b"GET / HTTP/1.2\r\nHost: {host}\r\n\r\n"),
    ("http-2-version", b"GET / HTTP/2.0\r\nHost: {host}\r\n\r\n"),
    ("lower-case-version", b"GET / http/1.1\r\nHost: {host}\r\n\r\n"),
    ("non-token-method", b"G(ET / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    ("non-ascii-target", b"GET /\xc3\xa9 HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    # Refused by Twisted (a name that is not a token), by Daphne's checks (relay/edge/
    # plain_http.py makes them), or past them by the request head the relay builds for the
    # pool socket: either way, never forwarded.
    ("non-ascii-query", b"GET /?q=\xc3\xa9 HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    ("vertical-tab-in-a-value", GET + b"X-A: a\x0bb\r\n\r\n"),
    ("non-token-header-name", GET + b"X(A): a\r\n\r\n"),
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n"),
    ("two-hosts", GET + b"Host: {host}\r\n\r\n"),
    ("two-different-hosts", GET + b"Host: elsewhere.localhost\r\n\r\n"),
    # Anything after the tunnel's name but a port would reach the app in its Host.
    ("host-with-more-after-the-port", b"GET / HTTP/1.1\r\nHost: {host}@evil.example\r\n\r\n"),
    ("host-with-a-path-after-the-port", b"GET / HTTP/1.1\r\nHost: {host}/x\r\n\r\n"),
    ("host-with-a-port-past-65535", b"GET / HTTP/1.1\r\nHost: {host}99999\r\n\r\n"),
    ("host-with-a-second-colon", b"GET / HTTP/1.1\r\nHost: {host}:\r\n\r\n"),
    ("chunk-size-not-hex", POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-negative", POST + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-0x-prefix", POST + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-plus-sign", POST + b"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-with-space", POST + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"),
    ("chunk-without-crlf", POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    ("chunk-too-long", POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"),
    (
        "chunk-extension-with-bare-lf",
        POST + b"Transfer-Encoding: chunked\r\n\r\n5;a=\nb\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "absolute-form-for-another-host",
        b"GET http://elsewhere.localhost/secret HTTP/1.1\r\nHost: {host}\r\n\r\n",
    ),
    # Trailer lines get the head's rules (relay/edge/trailers.py): Twisted dropped them
    # unread, and a proxy that ends a line at a bare LF would read the section's end, and a
    # request hidden in it, differently (found by an attacker run).
    ("bare-lf-in-a-trailer-hiding-a-request", LAST_CHUNK + b"X-T: 1\n" + SMUGGLED),
    ("bare-lf-ending-the-trailers", LAST_CHUNK + b"\n" + SMUGGLED),
    ("nul-in-a-trailer", LAST_CHUNK + b"X-T: a\x00b\r\n\r\n"),
    ("bare-cr-in-a-trailer", LAST_CHUNK + b"X-T: a\rb\r\n\r\n"),
    ("trailer-without-a-colon", LAST_CHUNK + b"NoColonHere\r\n\r\n"),
    ("trailer-with-a-non-token-name", LAST_CHUNK + b"X(T): 1\r\n\r\n"),
    ("folded-trailer", LAST_CHUNK + b"X-T: 1\r\n folded\r\n\r\n"),
    # Twisted's own refusals once got its empty 400 and then a second one from the relay.
    ("http-9-version", b"GET / HTTP/9.9\r\nHost: {host}\r\n\r\n"),
    # A bad chunk past the first slice the relay parses a chunked body in (8 KiB).
    (
        "bad-chunk-after-the-first-slice",
        POST + b"Transfer-Encoding: chunked\r\n\r\n2400\r\n" + b"a" * 0x2400 + b"\r\nzz\r\n\r\n",
    ),
]


@pytest.mark.parametrize("raw", [raw for _, raw in REJECTED], ids=[i for i, _ in REJECTED])
def test_an_ambiguous_or_malformed_request_gets_400_and_never_reaches_the_tunnel(
    raw_tunnel: RawTunnel, raw: bytes
):
    outcome = raw_tunnel.send(raw.replace(b"{host}", raw_tunnel.host.encode()))

    assert outcome.forwarded is None, outcome.forwarded
    assert outcome.answer.status == 400, outcome.answer
    # An answer that says what is wrong (never Twisted's bare, empty 400), and only it: a
    # malformed request line once got Twisted's 400 and then a second one from the relay.
    said = outcome.answer.header("content-type") or ""
    if said == "application/json":  # the relay's refusals of a head: then the close
        assert outcome.answer.json()["message"], outcome.answer
        assert outcome.after == b"", outcome.after
    else:  # a page: the relay's (a bad Host) or Daphne's (its header and path checks)
        assert said.startswith("text/html") and b"<h1>" in outcome.answer.body, outcome.answer
        assert outcome.after in (None, b""), outcome.after
    raw_tunnel.assert_nothing_was_forwarded()


@pytest.mark.parametrize(
    ("trailers", "said"),
    [
        (b"X-T: %s\r\n" % (b"a" * DEFAULT_MAX_HEADER_BYTES), b"trailers are larger than"),
        (b"X-T: 1\r\n" * (DEFAULT_MAX_HEADER_COUNT + 1), b"trailer lines"),
    ],
    ids=["trailers-over-the-head-size", "more-trailer-lines-than-header-lines"],
)
def test_trailers_are_bounded_as_a_head_is(raw_tunnel: RawTunnel, trailers: bytes, said: bytes):
    """With the relay's default limits: the trailer section gets the head's bounds and says
    so (it was once refused as "chunks too small", or by Twisted's 64 KiB only)."""
    raw = LAST_CHUNK.replace(b"{host}", raw_tunnel.host.encode()) + trailers + b"\r\n"

    outcome = raw_tunnel.send(raw)

    assert outcome.forwarded is None, outcome.forwarded
    assert outcome.answer.status == 431 and said in outcome.answer.body, outcome.answer
    raw_tunnel.assert_nothing_was_forwarded()


def test_valid_trailers_are_accepted_and_the_next_request_follows_them(raw_tunnel):
    host = raw_tunnel.host.encode()
    pool_socket = raw_tunnel.pool()
    with raw_tunnel.relay.visitor(raw_tunnel.name) as visitor:
        visitor.send(
            LAST_CHUNK.replace(b"{host}", host)
            + b"X-T: 1\r\nX-Checksum: sha256=ab:cd\r\n\r\n"
            + SMUGGLED.replace(b"/smuggled", b"/next").replace(b"{host}", host)
        )
        first = pool_socket.read_request()
        pool_socket.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        assert visitor.response().body == b"one"
        assert pool_socket.is_closed()  # never reused after a body
        pool_socket = raw_tunnel.pool()
        second = pool_socket.read_request()
        pool_socket.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        assert visitor.response().body == b"two"

    assert (first.target, first.body, second.target) == ("/", b"abc", "/next")


def test_a_tls_handshake_on_the_plain_port_is_told_so(raw_tunnel: RawTunnel):
    """A real ClientHello (what `curl https://` to the http port sends) holds an LF byte:
    it was refused as "Lines must end with CRLF", which says nothing of the mistake."""
    context = ssl.create_default_context()
    client = context.wrap_bio(ssl.MemoryBIO(), (outgoing := ssl.MemoryBIO()), False, "localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert hello[:2] == b"\x16\x03"

    outcome = raw_tunnel.send(hello)

    assert outcome.answer.status == 400, outcome.answer
    assert "TLS handshake" in outcome.answer.json()["message"], outcome.answer
    assert outcome.after == b"", outcome.after
    raw_tunnel.assert_nothing_was_forwarded()


def forwarded_framing(raw_tunnel: RawTunnel, raw: bytes):
    outcome = raw_tunnel.send(raw.replace(b"{host}", raw_tunnel.host.encode()))
    assert outcome.answer.status == 200, outcome.answer
    assert outcome.forwarded is not None
    return outcome.forwarded


def test_a_chunked_request_reaches_the_tunnel_with_a_content_length_only(raw_tunnel):
    request = forwarded_framing(
        raw_tunnel,
        b"POST /up HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    )

    assert request.body == b"hello world"
    assert request.header("content-length") == "11"
    assert request.header("transfer-encoding") is None
    assert request.header("x-trailer") is None


def test_content_length_with_surrounding_whitespace_is_read_as_that_number(raw_tunnel):
    request = forwarded_framing(
        raw_tunnel, b"POST /up HTTP/1.1\r\nHost: {host}\r\nContent-Length:  5 \t\r\n\r\nhello"
    )

    assert request.body == b"hello"
    assert [v for n, v in request.headers if n == "content-length"] == ["5"]


def test_a_get_with_a_body_is_forwarded_with_that_body_and_its_length(raw_tunnel):
    request = forwarded_framing(
        raw_tunnel, b"GET /q HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\n\r\nabc"
    )

    assert (request.method, request.body, request.header("content-length")) == ("GET", b"abc", "3")


def test_a_body_that_looks_like_a_request_stays_a_body_and_pipelining_keeps_order(raw_tunnel):
    host = raw_tunnel.host.encode()
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: %s\r\n\r\n" % host
    pool_socket = raw_tunnel.pool()
    with raw_tunnel.relay.visitor(raw_tunnel.name) as visitor:
        visitor.send(
            b"POST /a HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s"
            b"GET /b HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, len(smuggled), smuggled, host)
        )
        first = pool_socket.read_request()
        pool_socket.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        assert visitor.response().body == b"a"
        # Never reused after a body (an app that did not read it could answer it later).
        assert pool_socket.is_closed()
        pool_socket = raw_tunnel.pool()
        second = pool_socket.read_request()
        pool_socket.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
        assert visitor.response().body == b"b"

    assert (first.target, first.body, first.header("content-length")) == (
        "/a",
        smuggled,
        str(len(smuggled)),
    )
    assert second.target == "/b"
    assert pool_socket.buffer == b""


def test_an_absolute_form_target_for_the_same_host_is_forwarded_as_a_path(raw_tunnel):
    request = forwarded_framing(
        raw_tunnel, b"GET http://{host}/abs?q=1 HTTP/1.1\r\nHost: {host}\r\n\r\n"
    )

    assert request.raw_head.startswith(b"GET /abs?q=1 HTTP/1.1\r\n")


def test_a_request_with_the_lone_leading_empty_line_browsers_send_is_accepted(raw_tunnel):
    request = forwarded_framing(raw_tunnel, b"\r\nGET /ie HTTP/1.1\r\nHost: {host}\r\n\r\n")

    assert request.target == "/ie"


# --- what follows a request answered at once, on the same connection ---------------------------
def test_a_request_pipelined_after_a_refused_one_is_served_not_refused_again(raw_tunnel):
    """Daphne's 400 page is written while the relay is still parsing the packet (the body
    that ends it came with the head), and Twisted gives the bytes after it back to the head
    parser from inside that answer: the pipelined request once met the relay's bare-LF
    check there, and got a second, wrong 400 ("Lines must end with CRLF") instead of its own
    answer."""
    forwarded = _refused_then_served(raw_tunnel, b"Content-Length: 5\r\n\r\nhello", b"")

    assert forwarded.target == "/next"


def test_a_request_pipelined_after_a_refused_chunked_one_is_served(raw_tunnel):
    """The same after a chunked body, whose bytes the relay parses a slice (8 KiB) at a time:
    the slices after the one where the body ended are the next request's head. They once went
    on to the ended body's decoder."""
    pad = b"X-Pad-%d: " + b"p" * 5000 + b"\r\n"
    forwarded = _refused_then_served(
        raw_tunnel,
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        pad % 1 + pad % 2,
    )

    assert (forwarded.target, forwarded.header("x-pad-2")) == ("/next", "p" * 5000)


def _refused_then_served(raw_tunnel, framing: bytes, next_headers: bytes):
    """A POST that Daphne refuses (a header value with a control byte), its body framed by
    `framing`, and in the same packet a GET /next with `next_headers`: the POST gets Daphne's
    400 page, the GET reaches the pool socket and its answer the visitor. The GET as
    forwarded."""
    host = raw_tunnel.host.encode()
    pool_socket = raw_tunnel.pool()
    with raw_tunnel.relay.visitor(raw_tunnel.name) as visitor:
        visitor.send(
            b"POST /bad HTTP/1.1\r\nHost: %s\r\nX-A: a\x0bb\r\n%s"
            b"GET /next HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (host, framing, host, next_headers)
        )
        refused = visitor.response()
        forwarded = pool_socket.read_request()
        pool_socket.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
        served = visitor.response()

    assert refused.status == 400 and b"Invalid header value" in refused.body
    assert (served.status, served.body) == (200, b"next")
    return forwarded


def test_a_request_pipelined_after_a_refused_pool_upgrade_gets_nothing_more(raw_tunnel):
    """A refused pool upgrade is answered (404) and its connection closed at once, while the
    relay still parses the packet: nothing may follow that answer (a second 400 did)."""
    with raw_tunnel.relay.visitor() as visitor:
        visitor.send(
            b"GET /api/tunnels/no-such-tunnel/pool HTTP/1.1\r\nHost: localhost\r\n"
            b"Upgrade: tunnelsite-pool\r\nConnection: Upgrade\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        refused = visitor.response()
        after = visitor.read_until_closed()

    assert refused.status == 404 and refused.json()["message"]
    assert after == b""
