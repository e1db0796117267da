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
from dataclasses import dataclass

MAX_HEADER_BYTES = 107  # the spec's longest v1 line, "PROXY TCP6 ...\r\n" included
_SIGNATURE = b"PROXY "
_FAMILIES = {b"TCP4": 4, b"TCP6": 6}


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
    parts = line.split(b" ")
    if parts[1] == b"UNKNOWN":
        return ProxyHeader(None)
    version = _FAMILIES.get(parts[1])
    if version is None:
        raise ProxyHeaderError("a PROXY header names TCP4, TCP6 or UNKNOWN")
    if len(parts) != 6:
        raise ProxyHeaderError("a PROXY header has a source, a destination and two ports")
    source = _address(parts[2], version)
    _address(parts[3], version)
    port = _port(parts[4])
    _port(parts[5])
    return ProxyHeader((source, port))


def _address(text: bytes, version: int) -> str:
    try:
        address = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError("a PROXY header's address is not an IP address") from None
    if address.version != version:
        raise ProxyHeaderError("a PROXY header's address is not of the family it names")
    return str(address)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text.startswith(b"0")):
        raise ProxyHeaderError("a PROXY header's port is not a number")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError("a PROXY header's port is past 65535")
    return port
