"""A replay's edits, fed to relay/proxy/replay.py's `build` (sans-IO): every part of the
request has a bound, checked before anything parses it, and each refusal says which part
and how far (relay.protocol.INSPECT_REPLAY_MAX_METHOD_BYTES)."""

from __future__ import annotations

import base64

import pytest

from relay.pool.captures import Capture, ReplayError
from relay.protocol import (
    DEFAULT_INSPECT_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_REQUEST_LINE_BYTES,
    INSPECT_REPLAY_MAX_HEADERS,
    INSPECT_REPLAY_MAX_METHOD_BYTES,
    INSPECT_REPLAY_NAME_SHOWN_CHARS,
)
from relay.proxy.replay import build

HOST = (b"host", b"hook.localhost:8080")


def captured() -> Capture:
    capture = Capture("POST", "/hook", [HOST, (b"content-type", b"text/plain")], "10.0.0.7", 100)
    capture.request.add(b"hi")
    return capture


def built(edits: dict) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    """`build` with the relay's default limits, as a relay without settings runs it."""
    return build(
        captured(),
        edits,
        DEFAULT_INSPECT_BODY_BYTES,
        DEFAULT_MAX_HEADER_BYTES,
        DEFAULT_MAX_REQUEST_LINE_BYTES,
    )


def refusal(edits: dict) -> str:
    with pytest.raises(ReplayError) as caught:
        built(edits)
    assert caught.value.status == 400
    return caught.value.message


def test_an_unedited_capture_is_sent_as_it_was() -> None:
    method, target, headers, body = built({})
    assert (method, target, body) == (b"POST", b"/hook", b"hi")
    assert headers[0] == HOST and (b"content-length", b"2") in headers


def test_a_method_of_200000_characters_is_refused_before_it_reaches_the_app() -> None:
    message = refusal({"method": "G" * 200_000})
    assert f"at most {INSPECT_REPLAY_MAX_METHOD_BYTES} characters" in message


def test_the_longest_registered_method_goes_through() -> None:
    assert built({"method": "UPDATEREDIRECTREF"})[0] == b"UPDATEREDIRECTREF"


def test_a_path_past_the_request_line_limit_is_refused_and_says_the_limit() -> None:
    message = refusal({"path": "/" + "a" * DEFAULT_MAX_REQUEST_LINE_BYTES})
    assert "path may be at most" in message and str(DEFAULT_MAX_REQUEST_LINE_BYTES) in message
    longest = DEFAULT_MAX_REQUEST_LINE_BYTES - len("POST  HTTP/1.1\r\n")
    assert len(built({"path": "/" + "a" * (longest - 1)})[1]) == longest


def test_more_headers_than_the_bound_are_refused() -> None:
    message = refusal({"headers": [["x-a", "1"]] * (INSPECT_REPLAY_MAX_HEADERS + 1)})
    assert f"at most {INSPECT_REPLAY_MAX_HEADERS}" in message


@pytest.mark.parametrize(
    "pair",
    [["x-" + "n" * DEFAULT_MAX_HEADER_BYTES, "v"], ["x-big", "v" * DEFAULT_MAX_HEADER_BYTES]],
    ids=["a long name", "a long value"],
)
def test_a_header_past_the_heads_bound_is_refused_naming_it(pair: list[str]) -> None:
    message = refusal({"headers": [["Host", "hook.localhost"], pair]})
    assert f"at most {DEFAULT_MAX_HEADER_BYTES} bytes together" in message
    assert repr(pair[0][:INSPECT_REPLAY_NAME_SHOWN_CHARS]) in message


def test_many_headers_each_short_are_bounded_as_one_head() -> None:
    value = "v" * (DEFAULT_MAX_HEADER_BYTES // INSPECT_REPLAY_MAX_HEADERS)
    message = refusal({"headers": [["x-h", value]] * INSPECT_REPLAY_MAX_HEADERS})
    assert "bytes together" in message


def test_a_body_past_what_a_capture_keeps_is_refused() -> None:
    body = base64.b64encode(bytes(DEFAULT_INSPECT_BODY_BYTES + 1)).decode()
    assert f"at most {DEFAULT_INSPECT_BODY_BYTES} bytes" in refusal({"body_b64": body})


def test_headers_edits_without_host_get_the_captures_host_back() -> None:
    headers = built({"headers": [["X-Only", "this"]]})[2]
    assert headers[0] == HOST and (b"X-Only", b"this") in headers


def test_a_capture_without_host_gets_the_tunnels() -> None:
    capture = Capture("GET", "/", [], "10.0.0.7", 100)
    sent = build(capture, {}, 100, 16384, 8192, b"hook.example.com")
    assert sent[2] == [(b"host", b"hook.example.com")]


def test_two_hosts_are_refused_in_words_not_h11s() -> None:
    message = refusal({"headers": [["Host", "a"], ["host", "b"]]})
    assert message == "Send one Host header, not 2."


@pytest.mark.parametrize(
    ("pair", "words"),
    [
        (["Bad Name", "v"], "is not a header name"),
        (["X-Ok", "one\r\nX-Smuggled: two"], "line break"),
        (["X-Ok", "nul\x00"], "control character"),
    ],
)
def test_what_h11_would_refuse_is_refused_first_in_plain_words(pair: list[str], words: str) -> None:
    message = refusal({"headers": [pair]})
    assert words in message and "h11" not in message.lower()


def test_spaces_around_a_value_are_not_part_of_it() -> None:
    headers = built({"headers": [["X-Padded", "  v  "]]})[2]
    assert (b"X-Padded", b"v") in headers


def test_hop_by_hop_headers_are_not_sent_as_for_a_visitor() -> None:
    edits = {"headers": [["Connection", "close"], ["Upgrade", "websocket"], ["Expect", "x"]]}
    names = {name.lower() for name, _ in built(edits)[2]}
    assert names.isdisjoint({b"connection", b"upgrade", b"expect"})
