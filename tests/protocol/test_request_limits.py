"""Visitors' request heads are bounded: 431 for big or many headers, 414 for long lines.

Each limit is probed on both sides of its edge: just inside is an ordinary answer (404, as
the tunnel does not exist), just outside is refused before any tunnel is looked up.
"""

from __future__ import annotations

HOST = "no-such-tunnel.localhost"


def head(request_line: str, headers: list[str]) -> bytes:
    return ("\r\n".join([request_line, f"Host: {HOST}", *headers]) + "\r\n\r\n").encode()


def filler(count: int, size: int) -> list[str]:
    """`count` header lines of exactly `size` bytes each (without CRLF)."""
    return [f"X-Fill-{i:03d}: " + "a" * (size - len(f"X-Fill-{i:03d}: ")) for i in range(count)]


def assert_refused(answer, status: int) -> None:
    assert answer.status == status
    assert answer.header("content-type") == "application/json"
    assert answer.json()["message"]


def test_headers_just_under_16_kib_are_accepted(relay, send_raw):
    answer = send_raw(relay.port, head("GET / HTTP/1.1", filler(3, 5000)))

    assert answer.status == 404


def test_headers_over_16_kib_in_total_get_431(relay, send_raw):
    answer = send_raw(relay.port, head("GET / HTTP/1.1", filler(4, 5000)))

    assert_refused(answer, 431)


def test_a_single_header_line_over_16_kib_gets_431(relay, send_raw):
    answer = send_raw(relay.port, head("GET / HTTP/1.1", filler(1, 17000)))

    assert_refused(answer, 431)


def test_100_header_lines_are_accepted(relay, send_raw):
    answer = send_raw(relay.port, head("GET / HTTP/1.1", filler(99, 20)))  # + Host = 100

    assert answer.status == 404


def test_more_than_100_header_lines_get_431(relay, send_raw):
    answer = send_raw(relay.port, head("GET / HTTP/1.1", filler(100, 20)))  # + Host = 101

    assert_refused(answer, 431)


def test_a_request_line_just_under_8_kib_is_accepted(relay, send_raw):
    target = "/" + "p" * (8000 - len("GET / HTTP/1.1"))
    line = f"GET {target} HTTP/1.1"
    assert len(line) == 8000

    answer = send_raw(relay.port, head(line, []))

    assert answer.status == 404


def test_a_request_line_over_8_kib_gets_414(relay, send_raw):
    target = "/" + "p" * 8300

    answer = send_raw(relay.port, head(f"GET {target} HTTP/1.1", []))

    assert_refused(answer, 414)
