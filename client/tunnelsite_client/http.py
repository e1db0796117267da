"""A tiny asyncio HTTP/1.1 client for the relay's small JSON API (registration, DELETE).

h11 does the framing; one request per connection (`Connection: close`). Cancelling the
awaiting task closes the socket at once, so Ctrl-C never waits on a stuck request.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ssl
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

import h11

from .connect import ProxyError, RelayConnector, describe_tls_error
from .limits import API_MAX_BODY_BYTES, API_READ_CHUNK_BYTES
from .redact import redact_url


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    peer_ip: str | None = None  # the address that answered (the pool connects there too)


def split_userinfo(url: str) -> tuple[str, str | None]:
    """Strip `user:pass@` from a URL; return the bare URL and a Basic header value for it.

    axios (the npm client) turns URL user-info into Basic auth, so `--host
    https://TOKEN@relay` carries a token; we do the same for compatibility.
    """
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    bare = parts._replace(netloc=netloc).geturl()
    creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return bare, "Basic " + base64.b64encode(creds.encode()).decode()


async def request(
    method: str,
    url: str,
    headers: dict[str, str],
    timeout_s: float,
    connector: RelayConnector | None = None,
    body: bytes = b"",
) -> Answer:
    """Send one request (with `body`, if any) and read the whole answer; raise
    OSError/TimeoutError/h11 errors."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {redact_url(url)}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    async with asyncio.timeout(timeout_s):
        reader, writer = await (connector or RelayConnector()).open(parts.hostname, port, tls)
        try:
            conn = h11.Connection(our_role=h11.CLIENT)
            items = [("Host", host_header), ("Connection", "close"), *headers.items()]
            if body or method == "POST":
                items.append(("Content-Length", str(len(body))))
            writer.write(conn.send(h11.Request(method=method, target=target, headers=items)))
            if body:
                writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            answer = await _read_answer(conn, reader)
            # Through a proxy the peer is the proxy, not the relay: no address to give.
            direct = connector is None or connector.proxy_for(parts.hostname, tls) is None
            peer = writer.get_extra_info("peername") if direct else None
            return replace(answer, peer_ip=peer[0] if peer else None)
        finally:
            writer.close()


# What `request` raises when the relay cannot be reached or does not speak HTTP: the network
# (OSError, which covers ssl.SSLError and ClosedWithoutAnswer), its deadline (TimeoutError),
# and h11's framing errors (a half or broken answer). Anything else is a bug and propagates.
NO_ANSWER = (OSError, TimeoutError, h11.ProtocolError)


class ClosedWithoutAnswer(ConnectionError):
    """The server closed the connection before the first byte of an answer: the relay is
    restarting, or it speaks TLS on that port and the URL says http (its TLS refuses the
    plain bytes and closes)."""


async def _read_answer(conn: h11.Connection, reader: asyncio.StreamReader) -> Answer:
    status = 0
    headers: dict[str, str] = {}
    body = bytearray()
    received = False
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(API_READ_CHUNK_BYTES)
            if not data and not received:
                raise ClosedWithoutAnswer("the relay closed the connection without an answer")
            received = True
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > API_MAX_BODY_BYTES:
                raise h11.RemoteProtocolError("answer body too large")
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return Answer(status, headers, bytes(body))
        # InformationalResponse (1xx) events are skipped.


def describe_error(exc: BaseException, local: bool = False) -> str:
    """A short human reason for a socket error ("connection refused", "timed out"). A TLS
    failure of the relay says what to do about it (`local`: it is the local app's TLS)."""
    if isinstance(exc, ProxyError):
        return exc.message
    if isinstance(exc, ssl.SSLError) and not local:
        return describe_tls_error(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)
