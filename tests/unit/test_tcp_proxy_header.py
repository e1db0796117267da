"""relay/pool/tcp_proxy_header.py, the PROXY protocol v1 header before a TCP visitor's bytes:
any bytes raise nothing but ProxyHeaderError, any split of a valid header parses the same."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.pool.tcp_proxy_header import (
    MAX_HEADER_BYTES,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
)

LONGEST = (
    b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    b" 65535 65535\r\n"
)


def _read(chunks: list[bytes]) -> tuple[ProxyHeader, bytes]:
    reader = ProxyHeaderReader()
    for i, chunk in enumerate(chunks):
        got = reader.feed(chunk)
        if got is not None:
            header, rest = got
            return header, rest + b"".join(chunks[i + 1 :])
    raise AssertionError("the header never completed")


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def test_a_tcp4_header_gives_the_visitors_address_and_keeps_the_bytes_after_it() -> None:
    header, rest = _read([b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 20001\r\nhello"])
    assert header == ProxyHeader(("203.0.113.7", 40000)) and rest == b"hello"
    assert len(LONGEST) <= MAX_HEADER_BYTES  # the longest a balancer sends
    header, rest = _read([LONGEST])
    assert header.source == ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535) and rest == b""


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n",  # a port missing
        b"PROXY TCP4 ::1 ::1 1 2\r\n",  # the wrong family
        b"PROXY TCP4 203.0.113.7 192.0.2.1 70000 1\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 040 1\r\n",
        b"PROXY TCP5 203.0.113.7 192.0.2.1 40 1\r\n",
        b"PROXY " + b"1" * MAX_HEADER_BYTES,  # no end within the bound
        b"\r\n\r\n\x00\x0d\x0aQUIT\x0a",  # PROXY protocol v2's signature: not spoken
    ],
)
def test_malformed_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        _read([data])


def test_proxy_unknown_has_no_source() -> None:
    assert _read([b"PROXY UNKNOWN\r\n"])[0] == ProxyHeader(None)


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_any_bytes_raise_nothing_but_its_error(chunks: list[bytes]) -> None:
    reader = ProxyHeaderReader()
    try:
        for chunk in chunks:
            if reader.feed(chunk) is not None:
                return
    except ProxyHeaderError:
        return


@given(
    st.ip_addresses(v=4) | st.ip_addresses(v=6),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.binary(max_size=64),
    st.lists(st.integers(0, 200), max_size=6),
)
def test_any_split_of_a_valid_header_parses_the_same(
    source: ipaddress.IPv4Address | ipaddress.IPv6Address,
    sport: int,
    dport: int,
    after: bytes,
    cuts: list[int],
) -> None:
    family = b"TCP4" if source.version == 4 else b"TCP6"
    destination = "192.0.2.1" if source.version == 4 else "2001:db8::1"
    line = b"PROXY %s %s %s %d %d\r\n" % (
        family,
        str(source).encode(),
        destination.encode(),
        sport,
        dport,
    )
    data = line + after
    assert _read([data]) == (ProxyHeader((str(source), sport)), after)
    assert _read(_splits(data, cuts)) == (ProxyHeader((str(source), sport)), after)
