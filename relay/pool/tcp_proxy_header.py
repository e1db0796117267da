"""The PROXY protocol v1 header a TCP balancer (HAProxy's `send-proxy`) puts before a
visitor's bytes, sans-IO: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (TCP6 alike), at most
107 bytes. Read only on connections from RELAY_TCP_PROXY_PROTOCOL's networks
(relay/pool/tcp_visitor.py); its source is then the visitor's address.

`ProxyHeaderReader.feed` takes the bytes as they come: None until the line is complete,
then the header and the bytes after it (the visitor's). Anything malformed raises
`ProxyHeaderError`, and nothing else. `PROXY UNKNOWN` (a balancer's health check, or a
source it cannot name) gives a header with no source.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from relay.protocol import HIGHEST_PORT
from relay.protocol import TCP_PROXY_HEADER_MAX_BYTES as MAX_HEADER_BYTES

_SIGNATURE = b"PROXY "
_FAMILIES: dict[bytes, type[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {
    b"TCP4": ipaddress.IPv4Address,
    b"TCP6": ipaddress.IPv6Address,
}
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")  # decimal, no leading zero (the spec's form)


class ProxyHeaderError(ValueError):
    """Not a PROXY protocol v1 header: the connection is closed."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    source: tuple[str, int] | None  # the visitor's address and port; None: PROXY UNKNOWN


class ProxyHeaderReader:
    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""  # never past MAX_HEADER_BYTES before the line ends

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """The header and the bytes after it once the line is complete; None before."""
        buffer = self._buffer + data
        end = buffer.find(b"\r\n", 0, MAX_HEADER_BYTES)
        if end < 0:
            if not buffer.startswith(_SIGNATURE[: len(buffer)]):
                raise ProxyHeaderError("the connection does not start with a PROXY header")
            if len(buffer) >= MAX_HEADER_BYTES:
                raise ProxyHeaderError(f"no PROXY header within {MAX_HEADER_BYTES} bytes")
            self._buffer = buffer
            return None
        self._buffer = b""
        return parse_line(buffer[:end]), buffer[end + 2 :]


def parse_line(line: bytes) -> ProxyHeader:
    """A v1 header's line, without its CRLF."""
    if not line.startswith(_SIGNATURE):
        raise ProxyHeaderError("the connection does not start with a PROXY header")
    _, family, *fields = line.split(b" ")
    if family == b"UNKNOWN":
        return ProxyHeader(None)
    kind = _FAMILIES.get(family)
    if kind is None:
        raise ProxyHeaderError("a PROXY header names TCP4, TCP6 or UNKNOWN")
    try:
        source, destination, source_port, destination_port = fields
    except ValueError:
        raise ProxyHeaderError("a PROXY header has a source, a destination and two ports") from None
    _port(destination_port)
    _address(destination, kind)
    return ProxyHeader((_address(source, kind), _port(source_port)))


def _address(text: bytes, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> str:
    try:
        address = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError("a PROXY header's address is not an IP address") from None
    if not isinstance(address, kind):
        raise ProxyHeaderError("a PROXY header's address is not of the family it names")
    return str(address)


def _port(text: bytes) -> int:
    if not _PORT.fullmatch(text) or int(text) > HIGHEST_PORT:
        raise ProxyHeaderError("a PROXY header's port is not a TCP port")
    return int(text)
