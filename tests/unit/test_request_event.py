"""The request the relay sends upstream (relay/proxy/exchange.py `build_request`), made by
relay/pool/wire.py `request_event` with h11's grammar in one pass, against h11 as the oracle:
for any method, target and headers, either the very event `h11.Request` makes (the same
fields, the same raw header names) or None, and then the caller asks h11, which accepts or
refuses as before. No request h11 refuses ever gets an event. The grammar's faster forms
are checked against h11's own expressions byte for byte."""

from __future__ import annotations

import re
from typing import Any

import h11
import pytest
from h11._abnf import OWS, field_value, reason_phrase
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.headers import request_target
from relay.pool import wire
from relay.pool.wire import request_event
from relay.proxy.exchange import build_request

# Bytes at the edges of h11's grammar: blanks, the line ends and other whitespace, NUL,
# DEL and other controls, obs-text, a colon, a comma, digits.
EDGY = st.sampled_from(
    [b"a", b"Z", b"5", b" ", b"\t", b"\r", b"\n", b"\x0b", b"\x0c", b"\x00", b"\x01", b"\x1c"]
    + [b"\x7f", b"\xe9", b"\xff", b":", b",", b"/", b"~", b"(", b'"', b"\x00\n", b"chunked"]
)
edgy = st.lists(EDGY, max_size=8).map(b"".join)
anything = st.one_of(edgy, st.binary(max_size=10))

NAMES = [b"host", b"Host", b"HOST", b"x-a", b"User-Agent", b"content-length"]
NAMES += [b"Content-Length", b"transfer-encoding", b"Transfer-Encoding", b"connection"]
NAMES += [b"x-a\x00b\nhost"]  # two fields when joined as the one-pass check joins them
VALUES = [b"t.example", b"", b"1", b"12", b"007", b"1, 1", b"1,2", b" 1", b"-1", b"9" * 21]
VALUES += [b"chunked", b"Chunked", b"gzip", b"a b", b"a  \t b", b"caf\xe9", b"x\x01y"]
VALUES += [b"1\nx-a\x00b", b"1\r\nx-a: b"]  # as above
# Mostly what h11 takes, so that many requests are valid throughout.
names = st.one_of(*[st.sampled_from(NAMES)] * 4, anything)
values = st.one_of(*[st.sampled_from(VALUES)] * 4, anything)
methods = st.one_of(*[st.sampled_from([b"GET", b"POST", b"M-SEARCH"])] * 4, edgy)
targets = st.one_of(*[st.sampled_from([b"/", b"/p?q=1", b"*", b"/a b", b"", b"/\xe9"])] * 2, edgy)
header_lists = st.lists(st.tuples(names, values), max_size=6)


def h11_request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
    """h11's event, or its refusal's message."""
    try:
        return h11.Request(method=method, target=target, headers=headers)
    except h11.LocalProtocolError as exc:
        return str(exc)


def same_event(ours: h11.Request, theirs: h11.Request) -> None:
    assert ours == theirs  # method, target, version and the (lowercase) headers
    assert ours.headers.raw_items() == theirs.headers.raw_items()
    assert ours.headers._full_items == theirs.headers._full_items
    assert all(type(v) is bytes for v in (ours.method, ours.target, ours.http_version))


@settings(max_examples=1500, deadline=None)
@given(
    method=methods,
    target=targets,
    headers=header_lists,
    hosts=st.lists(st.integers(0, 6), max_size=2),
)
def test_a_request_event_is_h11s_own_or_left_to_h11(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], hosts: list[int]
) -> None:
    for at in hosts:  # a Host somewhere, or none, or two
        headers.insert(min(at, len(headers)), (b"Host", b"t.example"))
    theirs = h11_request(method, target, list(headers))
    ours = request_event(method, target, list(headers))
    if ours is None:
        return  # h11 decides, as `build_request` asks it to
    assert not isinstance(theirs, str), f"h11 refuses it: {theirs}"
    same_event(ours, theirs)


tokens = st.text("abcxyzABC-_.!#$%&'*+^`|~0123456789", min_size=1, max_size=8).map(str.encode)
field_values = st.one_of(
    st.just(b""),
    st.tuples(st.sampled_from([b"a", b"\xe9", b"\x01", b"\x7f"]), edgy, st.just(b"z")).map(
        lambda parts: b"".join(parts).translate(None, b"\x00\r\n\x0b\x0c")
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]),
    target=st.sampled_from([b"/", b"/1k", b"/p?q=1&r=%20", b"/caf%C3%A9"]),
    before=st.lists(st.tuples(tokens, field_values), max_size=5),
    after=st.lists(st.tuples(tokens, field_values), max_size=5),
    length=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_a_valid_request_takes_the_one_pass_path(
    method: bytes,
    target: bytes,
    before: list[tuple[bytes, bytes]],
    after: list[tuple[bytes, bytes]],
    length: int | None,
) -> None:
    """What a visitor's request carries (valid names and values, one Host, the relay's
    Content-Length) is made in one pass, not handed to h11 again."""
    named = [pair for pair in before + after if pair[0].lower() not in wire._REQUEST_SPECIAL]
    headers = [*named[: len(before)], (b"Host", b"t.example"), *named[len(before) :]]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    ours = request_event(method, target, list(headers))
    assert ours is not None
    same_event(ours, h11.Request(method=method, target=target, headers=headers))


SPECIAL = [(b"Host", b"t.example"), (b"host", b"u.example"), (b"Connection", b"close")]
SPECIAL += [(b"Content-Length", v) for v in (b"0", b"12", b"012", b"1, 1", b"1,2", b"9" * 21)]
SPECIAL += [(b"content-length", b"12"), (b"CONTENT-LENGTH", b"13"), (b"content-length", b"")]
SPECIAL += [(b"Transfer-Encoding", v) for v in (b"chunked", b"Chunked", b"gzip", b"")]
SPECIAL += [(b"transfer-encoding", b"chunked")]


@settings(max_examples=1000, deadline=None)
@given(
    valid=st.lists(st.tuples(tokens, field_values), max_size=3),
    special=st.lists(st.tuples(st.sampled_from(SPECIAL), st.integers(0, 6)), max_size=4),
)
def test_the_headers_h11_counts_or_rewrites_are_h11s_or_left_to_it(
    valid: list[tuple[bytes, bytes]], special: list[tuple[tuple[bytes, bytes], int]]
) -> None:
    """Host (exactly one), Content-Length (digits, one value, once) and Transfer-Encoding
    (`chunked`, once) in an otherwise valid request: h11's event, or h11 decides."""
    headers = [pair for pair in valid if pair[0].lower() not in wire._REQUEST_SPECIAL]
    for pair, at in special:
        headers.insert(min(at, len(headers)), pair)
    theirs = h11_request(b"GET", b"/", list(headers))
    ours = request_event(b"GET", b"/", list(headers))
    if ours is not None:
        assert not isinstance(theirs, str), f"h11 refuses it: {theirs}"
        same_event(ours, theirs)


def scope(method: str, target: bytes) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/", "raw_path": target, "headers": []}


@settings(max_examples=1000, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "G T", "GÉT", "DELETE"]),
    target=targets,
    headers=header_lists,
    body=st.sampled_from([b"", b"abc"]),
    more=st.booleans(),
    declared=st.sampled_from([None, b"3", b"x"]),
    had_framing=st.booleans(),
)
def test_build_request_sends_or_refuses_what_h11_alone_did(
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    more: bool,
    declared: bytes | None,
    had_framing: bool,
) -> None:
    """The relay's request is the event h11 alone made before, or the same refusal (the
    visitor's 400 "The request cannot be forwarded: <h11's message>")."""
    headers.insert(0, (b"host", b"t.example"))
    first = {"type": "http.request", "body": body, "more_body": more}
    framed = list(headers)
    visit = scope(method, target)
    try:
        ours: Any = build_request(visit, first, framed, declared, had_framing)
    except h11.LocalProtocolError as exc:
        ours = str(exc)
    except UnicodeError as exc:
        ours = type(exc)
    try:
        theirs: Any = h11.Request(method=method, target=request_target(visit), headers=framed)
    except h11.LocalProtocolError as exc:
        theirs = str(exc)
    except UnicodeError as exc:
        theirs = type(exc)
    if isinstance(theirs, h11.Request):
        same_event(ours, theirs)
    else:
        assert ours == theirs


# --- the grammar's faster forms, byte for byte against h11's expressions -------------------
def matches(pattern: str) -> re.Pattern[bytes]:
    return re.compile(pattern.encode("ascii"))


H11_OWS_VALUE = matches(f"{OWS}{field_value}{OWS}")
H11_VALUE = matches(field_value)
H11_REASON = matches(reason_phrase)
TEXT = matches(wire._TEXT)
VALUE = matches(wire._FIELD_VALUE)
any_bytes = st.one_of(edgy, st.binary(max_size=12))


@settings(max_examples=1500, deadline=None)
@given(data=any_bytes)
def test_the_faster_expressions_match_what_h11s_match(data: bytes) -> None:
    text = TEXT.fullmatch(data) is not None
    assert text == (H11_OWS_VALUE.fullmatch(data) is not None)
    assert text == (H11_REASON.fullmatch(data) is not None)
    assert (VALUE.fullmatch(data) is not None) == (H11_VALUE.fullmatch(data) is not None)


@pytest.mark.parametrize("byte", [bytes([b]) for b in range(256)])
def test_each_byte_alone_and_between_others_is_taken_as_h11_takes_it(byte: bytes) -> None:
    for data in (byte, b"a" + byte, byte + b"a", b"a" + byte + b"b", byte * 2):
        assert (TEXT.fullmatch(data) is None) == (H11_OWS_VALUE.fullmatch(data) is None)
        assert (VALUE.fullmatch(data) is None) == (H11_VALUE.fullmatch(data) is None)
