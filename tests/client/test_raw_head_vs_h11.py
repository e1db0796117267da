"""raw_head.py, the fast path's reading of heads, against h11 as the oracle (sans-IO).

The fast path takes a head only when h11 would read it the same way; anything else goes to
h11 itself, so together they accept exactly what h11 accepts. Checked here on heads built
from well-formed and malformed pieces (bare LFs, obs-folds, spaces before colons, control
bytes, odd versions, framing headers, several Hosts or Content-Lengths): whatever raw_head
takes, h11 takes too, with the same method, target, status, headers and body length; and
what the fast path passes on (the Host rewritten, the app's connection headers dropped)
reads, through h11, as what the h11 path would have sent.
"""

from __future__ import annotations

import h11
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tunnelsite_client.limits import LOCAL_MAX_HEADER_BYTES, POOL_MAX_HEADER_BYTES
from tunnelsite_client.raw_head import head_end, request_head, response_head
from tunnelsite_client.target import rewrite_host

NAMES = [b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"X-Forwarded-For"]
NAMES += [b"Transfer-Encoding", b"Connection", b"Keep-Alive", b"Proxy-Connection", b"Expect"]
NAMES += [b"Upgrade", b"TE", b"Trailer", b"X A", b"X:A", b"", b"\xff", b"Cookie", b"accept"]
VALUES = [b"x", b"  spaced out  ", b"5", b"0", b"05", b"-1", b"1, 1", b"+3", b"chunked"]
VALUES += [b"close", b"keep-alive", b"upgrade", b"100-continue", b"a\tb", b"\x01", b"\x7f"]
VALUES += [b"\xff\xfe", b"", b"a\r\n b", b"a\nb", b"a\rb", b"example.test:8080", b"\x00"]
VALUES += [b"123456789012345678", b"1234567890123456789"]
SEPARATORS = [b": ", b":", b":\t", b" : ", b":  "]
ENDINGS = [b"\r\n"] * 20 + [b"\n", b"\r\r\n", b" \r\n"]

# Mostly well-formed pieces, so that many heads are ones the fast path takes; now and then
# a malformed one, so that many are not.
PLAIN = [(b"X-Forwarded-For", b": ", b"127.0.0.1", b"\r\n"), (b"Accept", b": ", b"*/*", b"\r\n")]


def mostly(
    good: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]
) -> st.SearchStrategy[bytes]:
    return st.one_of(good, good, good, good, good, good, odd)


names = st.one_of(st.sampled_from(NAMES), st.binary(max_size=4))
values = st.one_of(st.sampled_from(VALUES), st.binary(max_size=6))
odd_line = st.tuples(names, st.sampled_from(SEPARATORS), values, st.sampled_from(ENDINGS))
header_lines = st.builds(
    lambda host, length, lines: (
        ([(b"Host", b": ", b"a.example", b"\r\n")] if host else [])
        + ([(b"Content-Length", b": ", length, b"\r\n")] if length is not None else [])
        + lines
    ),
    st.booleans(),
    st.one_of(st.none(), st.sampled_from([b"0", b"1", b"3", b"12", b"20"])),
    st.lists(st.one_of(st.sampled_from(PLAIN), st.sampled_from(PLAIN), odd_line), max_size=4),
)


def _head(first: bytes, lines: list[tuple[bytes, bytes, bytes, bytes]], end: bytes) -> bytes:
    return first + b"".join(n + s + v + e for n, s, v, e in lines) + end


# Heads of valid but varied material: any token as a name, any visible bytes as a value,
# with or without optional whitespace; where the two readers would differ if they did.
tokens = st.from_regex(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]{1,8}", fullmatch=True)
field_values = st.from_regex(
    rb"([\x21-\x7e\x80-\xff]{1,5}([ \t]{1,2}[\x21-\x7e\x80-\xff]{1,5})?)?", fullmatch=True
)
valid_lines = st.lists(
    st.builds(
        lambda name, separator, value, trailing: (name, separator, value + trailing, b"\r\n"),
        tokens,
        st.sampled_from([b": ", b":", b":\t", b": \t "]),
        field_values,
        st.sampled_from([b"", b" ", b"\t "]),
    ),
    max_size=5,
)
plain_requests = st.builds(
    lambda method, target, lines, host_first, length, body: (
        _head(
            method + b" " + target + b" HTTP/1.1\r\n",
            (
                ([(b"Host", b": ", b"a.example", b"\r\n")] if host_first else [])
                + ([(b"Content-Length", b": ", length, b"\r\n")] if length is not None else [])
                + lines
                + ([] if host_first else [(b"host", b":", b"b.example ", b"\r\n")])
            ),
            b"\r\n",
        )
        + body
    ),
    st.one_of(st.sampled_from([b"GET", b"POST", b"DELETE"]), tokens),
    st.from_regex(rb"[\x21-\x7e]{1,12}", fullmatch=True),
    valid_lines,
    st.booleans(),
    st.one_of(st.none(), st.sampled_from([b"0", b"1", b"3", b"12", b"007"])),
    st.binary(max_size=16),
)
odd_requests = st.builds(
    lambda method, target, version, first_end, lines, end, body: (
        _head(method + b" " + target + b" " + version + first_end, lines, end) + body
    ),
    mostly(
        st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"CONNECT", b"get"]),
        st.binary(max_size=4),
    ),
    mostly(st.sampled_from([b"/", b"/a?b=1", b"*", b"/x y", b"/\x7f", b"//"]), st.binary()),
    st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/1.10", b"http/1.1", b"HTTP/2.0"]),
    st.sampled_from(ENDINGS),
    header_lines,
    st.sampled_from([b"\r\n"] * 12 + [b"\n"]),
    st.binary(max_size=12),
)
requests = st.one_of(plain_requests, odd_requests)

plain_responses = st.builds(
    lambda status, reason, lines, length, body: (
        _head(
            b"HTTP/1.1 " + status + reason + b"\r\n",
            [(b"Content-Length", b": ", length, b"\r\n"), *lines],
            b"\r\n",
        )
        + body
    ),
    st.from_regex(rb"[2-5][0-9][0-9]", fullmatch=True),
    st.from_regex(rb"( [\x21-\x7e\x80-\xff \t]{0,8})?", fullmatch=True),
    valid_lines,
    st.sampled_from([b"0", b"1", b"3", b"12", b"007"]),
    st.binary(max_size=16),
)
odd_responses = st.builds(
    lambda status, reason, lines, end, body: (
        _head(b"HTTP/1.1 " + status + reason + b"\r\n", lines, end) + body
    ),
    mostly(
        st.sampled_from([b"200", b"201", b"404", b"500", b"599", b"204", b"304", b"101", b"100"]),
        st.sampled_from([b"600", b"99", b"2000", b"20x"]),
    ),
    mostly(st.sampled_from([b" OK", b"", b" ", b" Not Found"]), st.binary(max_size=3)),
    header_lines,
    st.sampled_from([b"\r\n"] * 12 + [b"\n"]),
    st.binary(max_size=12),
)

responses = st.one_of(plain_responses, odd_responses)

HOSTS = st.sampled_from([None, b"app.internal", b"xn--bcher-kva.example"])


def h11_request(data: bytes) -> tuple[h11.Request, bytes, bool] | None:
    """What h11, as the relay's side of a pool socket, reads from `data`: the request, its
    body so far and whether it ended; None if h11 refuses it."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=POOL_MAX_HEADER_BYTES)
    conn.receive_data(data)
    return _read(conn, h11.Request)  # type: ignore[return-value]


def h11_response(data: bytes) -> tuple[h11.Response, bytes, bool] | None:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=LOCAL_MAX_HEADER_BYTES)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    return _read(conn, h11.Response)  # type: ignore[return-value]


def _read(conn: h11.Connection, kind: type) -> tuple[object, bytes, bool] | None:
    head: object = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return (head, body, False) if head is not None else None
            if isinstance(event, kind):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return head, body, True
            else:
                return None  # an interim answer: never the fast path's
    except h11.RemoteProtocolError:
        return None


@settings(max_examples=500, deadline=None)
@given(requests, HOSTS)
@example(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None)
@example(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcdef", b"b")
@example(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n", None)
@example(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n y\r\n\r\n", None)
def test_a_request_head_the_fast_path_takes_reads_the_same_through_h11(
    data: bytes, host: bytes | None
):
    end = head_end(data)
    fast = request_head(data, end, host) if end > 0 else None
    if fast is None:
        return
    oracle = h11_request(data)
    assert oracle is not None, "the fast path took a request h11 refuses"
    request, body, ended = oracle
    assert (request.method, request.target) == (fast.method, fast.target)
    expected = rewrite_host(list(request.headers.raw_items()), host and host.decode())
    assert fast.headers() == expected
    whole = len(data) >= end + fast.body_bytes
    assert ended == whole
    if whole:
        assert body == data[end : end + fast.body_bytes]
    # What the app gets reads as what the h11 path would have sent it.
    passed = h11_request(fast.head + data[end : end + fast.body_bytes])
    assert passed is not None
    again, again_body, again_ended = passed
    assert (again.method, again.target) == (request.method, request.target)
    assert list(again.headers.raw_items()) == expected
    if whole:
        assert again_ended and again_body == body


@settings(max_examples=500, deadline=None)
@given(responses)
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nokEXTRA")
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n")
def test_an_answer_head_the_fast_path_takes_reads_the_same_through_h11(data: bytes):
    end = head_end(data)
    fast = response_head(data, end) if end > 0 else None
    if fast is None:
        return
    oracle = h11_response(data)
    assert oracle is not None, "the fast path took an answer h11 refuses"
    response, body, ended = oracle
    assert response.status_code == fast.status
    whole = len(data) >= end + fast.body_bytes
    assert ended == whole
    if whole:
        assert body == data[end : end + fast.body_bytes]
    passed = h11_response(fast.head + data[end : end + fast.body_bytes])
    assert passed is not None
    again, _, _ = passed
    local_only = {b"connection", b"keep-alive", b"proxy-connection"}
    kept = [(n, v) for n, v in response.headers.raw_items() if n.lower() not in local_only]
    assert list(again.headers.raw_items()) == kept
    assert again.status_code == response.status_code and again.reason == response.reason


def test_the_plain_heads_a_relay_and_an_app_send_take_the_fast_path():
    """So that the properties above are about a path that is taken."""
    relay = (
        b"GET /1k?x=1 HTTP/1.1\r\nhost: name.localhost:8080\r\nuser-agent: wrk\r\n"
        b"x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    )
    head = request_head(relay, head_end(relay))
    assert head is not None and head.head == relay and head.body_bytes == 0
    rewritten = request_head(relay, head_end(relay), b"app.internal")
    assert rewritten is not None
    assert b"\r\nhost: app.internal\r\n" in rewritten.head
    post = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    posted = request_head(post, head_end(post))
    assert posted is not None and posted.body_bytes == 5
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    assert response_head(answer, head_end(answer)) is None  # Connection: h11's, it decides
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok"
    passed = response_head(answer, head_end(answer))
    assert passed is not None and passed.head == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"


def test_what_the_fast_path_leaves_to_h11():
    def taken(data: bytes) -> bool:
        return request_head(data, head_end(data)) is not None

    assert not taken(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert not taken(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\n")
    assert not taken(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert not taken(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    assert not taken(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert not taken(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
    assert not taken(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")

    def answered(data: bytes) -> bool:
        return response_head(data, head_end(data)) is not None

    assert not answered(b"HTTP/1.1 200 OK\r\n\r\nclose-delimited")
    assert not answered(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert not answered(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    assert not answered(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert not answered(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not answered(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
