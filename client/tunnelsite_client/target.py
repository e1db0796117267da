"""Where a pool socket's requests go, what each one logs, and the page a visitor gets when
the local app fails. The byte path itself is `exchange.py`."""

from __future__ import annotations

import html
import ssl
from dataclasses import dataclass, field
from typing import Protocol

import h11

from .keepalive import KeepAlive
from .local import AddressCache


@dataclass(frozen=True)
class LocalTarget:
    """Where requests go: `host:port`, optionally over TLS, with an optional Host rewrite."""

    host: str = "localhost"
    port: int = 80
    host_header: str | None = None  # --local-host: the Host value each request gets
    ssl_context: ssl.SSLContext | None = None
    # Shared by the pool sockets of a tunnel: the host is looked up once.
    addresses: AddressCache = field(default_factory=AddressCache, compare=False, repr=False)
    # Shared too: one misbehaving answer turns keep-alive off for every pool socket.
    keepalive: KeepAlive = field(default_factory=KeepAlive, compare=False, repr=False)

    @property
    def label(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class RequestLog:
    method: str
    target: str
    status: int
    duration_s: float


class ProxyObserver(Protocol):
    def request_done(self, log: RequestLog) -> None: ...
    def local_unreachable(self, reason: str) -> None: ...
    def local_reachable(self) -> None: ...
    def count_bytes(self, received: int, sent: int) -> None: ...
    def keepalive_off(self, reason: str) -> None: ...


def rewrite_host(headers: list[tuple[bytes, bytes]], host: str | None) -> list[tuple[bytes, bytes]]:
    """The request headers with every Host value replaced by `host` (unchanged if None)."""
    value = host_value(host)
    if value is None:
        return headers
    return [(name, value if name.lower() == b"host" else v) for name, v in headers]


def host_value(host: str | None) -> bytes | None:
    """--local-host as the bytes of a Host header (IDNA for a name that is not ASCII)."""
    if host is None:
        return None
    return host.encode("idna" if not host.isascii() else "ascii")


def error_response(status: int, reason: str, target: LocalTarget) -> tuple[h11.Response, bytes]:
    """The response the client writes itself when the local app fails the visitor."""
    title = {502: "502 Bad Gateway", 504: "504 Gateway Timeout"}.get(status, str(status))
    body = (
        f"<!doctype html><html><head><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>The tunnel is up, but the local app at "
        f"<code>{html.escape(target.label)}</code> did not answer: {html.escape(reason)}.</p>"
        "<p>Start the app (or check <code>--port</code>/<code>--local-host</code>) "
        "and reload.</p></body></html>\n"
    ).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-tunnelsite-client-error", b"local-app-unreachable"),
    ]
    return h11.Response(status_code=status, headers=headers, reason=title.partition(" ")[2]), body
