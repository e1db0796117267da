"""Opening a pool connection over the relay's own port: an HTTP/1.1 Upgrade to the
registration's `pool_url` with the tunnel's pool secret, through `RelayConnector.open` (TLS
when the URL is https, a forward proxy when one is set). After the relay's `101` the
connection carries what a raw pool socket carries; bytes the relay sent right after the
`101` stay in the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import urlsplit

from .connect import RelayConnector
from .limits import POOL_REFUSAL_MAX_BODY_BYTES, POOL_UPGRADE_MAX_HEAD_BYTES
from .registration import POOL_SECRET_HEADER, USER_AGENT

UPGRADE = "tunnelsite-pool"
DEFAULT_PORTS = {"http": 80, "https": 443}
# Statuses saying the registration is gone (a wrong secret: a newer registration of the
# name; no such tunnel: closed or expired): the tunnel must register again.
REGISTRATION_GONE = (401, 404)


class PoolRefused(Exception):
    """The relay refused the upgrade; `message` is its JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def registration_gone(self) -> bool:
        return self.status in REGISTRATION_GONE


def pool_endpoint(pool_url: str) -> tuple[str, int, bool]:
    """host, port and TLS of a pool URL (validated by registration.py)."""
    parts = urlsplit(pool_url)
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    return parts.hostname or "", port, parts.scheme == "https"


def upgrade_request(pool_url: str, secret: str) -> bytes:
    parts = urlsplit(pool_url)
    host = parts.netloc.rpartition("@")[2]
    return (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
        f"Connection: Upgrade\r\nUpgrade: {UPGRADE}\r\n{POOL_SECRET_HEADER}: {secret}\r\n\r\n"
    ).encode("ascii")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise PoolRefused(0, f"the relay's answer to the pool upgrade is not HTTP: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(code), headers


async def _refusal(reader: asyncio.StreamReader, status: int, headers: dict[str, str]) -> str:
    """The message of a refusal's JSON body (bounded), or a generic one."""
    message = f"the relay refused the pool connection (HTTP {status})"
    with contextlib.suppress(ValueError, asyncio.IncompleteReadError, AttributeError):
        length = min(int(headers.get("content-length", "0")), POOL_REFUSAL_MAX_BODY_BYTES)
        body = await reader.readexactly(length) if length > 0 else b""
        text = json.loads(body).get("message")
        if text:
            message = str(text)
    return message


async def open_upgraded(
    connector: RelayConnector, pool_url: str, secret: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """One pool connection, upgraded; PoolRefused with the relay's message when refused,
    OSError when the relay cannot be reached (the caller puts a deadline on it)."""
    host, port, tls = pool_endpoint(pool_url)
    reader, writer = await connector.open(host, port, tls)
    try:
        writer.write(upgrade_request(pool_url, secret))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise PoolRefused(0, "the relay's answer to the pool upgrade is too large") from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the relay closed the pool connection") from None
        if len(head) > POOL_UPGRADE_MAX_HEAD_BYTES:
            raise PoolRefused(0, "the relay's answer to the pool upgrade is too large")
        status, headers = _parse_head(head)
        if status != 101:
            raise PoolRefused(status, await _refusal(reader, status, headers))
        if headers.get("upgrade", "").lower() != UPGRADE:
            raise PoolRefused(0, "the relay switched the pool connection to another protocol")
    except BaseException:
        writer.close()
        raise
    return reader, writer
