"""How this client reaches the relay: one place for the relay's TLS (its certificate is
verified by default; `--ca FILE`, `--insecure`) and for a forward proxy (HTTPS_PROXY).

Registration, release and the pool connections all dial the relay through
`RelayConnector.open`. Through a proxy it sends `CONNECT relay:port`, and TLS to the relay
(SNI and verification for the relay's name) runs inside that tunnel, so the proxy sees
neither the token nor the traffic. The rules that keep a token off the wire in clear
(`plain_http_token_refusal`) live here too.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .limits import PROXY_CONNECT_TIMEOUT_S, PROXY_MAX_HEAD_BYTES
from .redact import redact_url

INSECURE_WARNING = (
    "WARNING: --insecure: the relay's certificate is not checked; anyone on the path can "
    "read and change this tunnel's traffic"
)
HTTP_OK = 200
HTTP_CLIENT_ERRORS = range(400, 500)  # a proxy's 4xx: asking again will not help
DEFAULT_PROXY_PORT = 80  # an http:// proxy URL without a port, as curl and requests read it


class ProxyError(ConnectionError):
    """The forward proxy was unreachable (`status` 0) or refused CONNECT (`status`)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Proxy:
    """An http:// forward proxy; `authorization` is the Basic value of its user-info."""

    host: str
    port: int
    shown: str  # the proxy URL fit to print (user-info masked)
    authorization: str | None = field(default=None, repr=False)


def parse_proxy(url: str) -> Proxy:
    """An HTTP(S)_PROXY value; ValueError when it is not an http:// proxy URL."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text  # `proxy:3128`, as curl reads it
    try:
        parts = urlsplit(text)
        port = parts.port or DEFAULT_PROXY_PORT
    except ValueError as exc:
        raise ValueError(f"the proxy URL {redact_url(text)!r} is malformed ({exc})") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(
            f"the proxy URL {redact_url(text)!r} is not supported: use http://HOST:PORT "
            "(the relay's TLS runs inside the proxy's CONNECT tunnel)"
        )
    authorization = None
    if parts.username is not None:
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(creds.encode()).decode()
    host = parts.hostname
    shown_host = f"[{host}]" if ":" in host else host
    return Proxy(host, port, f"http://{shown_host}:{port}", authorization)


def proxy_secrets(environ: Mapping[str, str]) -> set[str]:
    """The user names and passwords in the proxy variables (masked in everything printed)."""
    found: set[str] = set()
    for name in PROXY_VARIABLES:
        value = environ.get(name) or ""
        try:
            parts = urlsplit(value if "://" in value else "http://" + value)
            user, password = parts.username, parts.password
        except ValueError:
            continue
        for secret in (user, password):
            if secret:
                found.update({secret, unquote(secret)})
    return found


# Lower case first: curl and requests prefer it (and CGI programs get HTTP_PROXY from a
# request's `Proxy:` header, so for http relays only the lower-case name would be safe;
# we read both, as requests does, since lt is not a CGI program).
HTTPS_PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY")
HTTP_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")
PROXY_VARIABLES = HTTPS_PROXY_VARIABLES + HTTP_PROXY_VARIABLES


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        if environ.get(name, "").strip():
            return environ[name].strip()
    return ""


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY (a comma list: `*`, host names matched with their subdomains,
    `.suffix`, IP addresses, an optional `:port` ignored) says to go to `host` directly."""
    host = host.lower().strip("[]").rstrip(".")
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:
            entry = entry.split(":", 1)[0]
        entry = entry.lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def proxies_from(environ: Mapping[str, str]) -> tuple[Proxy | None, Proxy | None, str]:
    """(https proxy, http proxy, NO_PROXY) from the environment; ValueError on a bad URL."""
    https = _first(environ, HTTPS_PROXY_VARIABLES)
    http = _first(environ, HTTP_PROXY_VARIABLES)
    return (
        parse_proxy(https) if https else None,
        parse_proxy(http) if http else None,
        _first(environ, NO_PROXY_VARIABLES),
    )


def is_loopback(hostname: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: traffic that never leaves this machine."""
    name = hostname.lower().strip("[]").rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_token_refusal(
    host: str,
    token: str | None,
    insecure: bool,
    connector: RelayConnector | None = None,
    *,
    what: str = "a token",
) -> str | None:
    """Why a token may not go to the relay `host`, or None when it may. The same rule keeps
    visitor passwords (lt --basic-auth) off plain http: `what` names the secret.

    A token (from --token, LT_TOKEN, a saved login or the URL's user-info) is never sent
    over plain http to a host that is not loopback, unless --insecure says so. A loopback
    relay reached through a forward proxy (`connector`'s HTTP_PROXY) counts as loopback only
    when the proxy is on loopback too (`RelayConnector.proxy_for` never sends a loopback
    relay to a proxy elsewhere; this is the same rule, checked again where the token goes)."""
    try:
        parts = urlsplit(host)
        has_userinfo = parts.username is not None
    except ValueError:
        return None  # a malformed URL gets its own error
    if insecure or parts.scheme != "http" or (not token and not has_userinfo):
        return None
    hostname = parts.hostname or ""
    proxy = connector.proxy_for(hostname, False) if connector is not None else None
    if proxy is not None and not is_loopback(proxy.host):
        return (
            f"refusing to send {what} over plain http through the proxy at {proxy.shown}: "
            "the proxy and anyone on the path to it could read it and use it. Use an "
            "https:// relay URL (its TLS runs inside the proxy's CONNECT tunnel), NO_PROXY "
            "for this host, or pass --insecure if you accept that"
        )
    if is_loopback(hostname):
        return None
    return (
        f"refusing to send {what} over plain http to {hostname}: anyone on the path "
        "could read it and use it. Use an https:// relay URL, or pass --insecure "
        "if you accept that"
    )


def describe_tls_error(exc: ssl.SSLError) -> str:
    """What went wrong with the relay's TLS, and what to do about it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        if "mismatch" in str(reason).lower():
            return (
                f"the relay's certificate is not valid for this name ({reason}): use the relay "
                "URL its certificate names, or fix the relay's certificate; --insecure skips "
                "the check"
            )
        return (
            f"the relay's certificate is not trusted ({reason}): pass --ca FILE with its CA, "
            "or fix the relay's certificate; --insecure skips the check"
        )
    return f"TLS failed ({exc.reason or exc})"


def is_lasting(exc: BaseException | None) -> bool:
    """Whether a failure to reach the relay will not go away by asking again: its
    certificate is refused, or the proxy refused CONNECT with a 4xx (authentication,
    a port it does not allow)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    return isinstance(exc, ProxyError) and exc.status in HTTP_CLIENT_ERRORS


@dataclass(frozen=True)
class RelayConnector:
    """The way to the relay. `ca_file`: verify its certificate against this CA file (else
    the system's store); `insecure`: do not verify it (--insecure). `https_proxy` and
    `http_proxy`: the forward proxy for https and http relays (CONNECT), except for the
    hosts `no_proxy` names."""

    ca_file: str | None = None
    insecure: bool = False
    https_proxy: Proxy | None = None
    http_proxy: Proxy | None = None
    no_proxy: str = ""
    _context: list[ssl.SSLContext] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str], ca_file: str | None = None, insecure: bool = False
    ) -> RelayConnector:
        """A connector with the proxies of HTTPS_PROXY, HTTP_PROXY and NO_PROXY."""
        https, http, no_proxy = proxies_from(environ)
        return cls(ca_file, insecure, https, http, no_proxy)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings for https relays, made once."""
        if not self._context:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context.append(context)
        return self._context[0]

    def proxy_for(self, host: str, tls: bool) -> Proxy | None:
        """The proxy a connection to `host` goes through, or None (direct). A loopback
        relay (localhost, 127.0.0.0/8, ::1) goes through a proxy only when the proxy is on
        loopback too: a proxy elsewhere would CONNECT to its own localhost, not this
        machine's (Go's net/http never proxies loopback hosts either)."""
        proxy = self.https_proxy if tls else self.http_proxy
        if proxy is None or bypasses_proxy(host, self.no_proxy):
            return None
        if is_loopback(host) and not is_loopback(proxy.host):
            return None
        return proxy

    async def open(
        self, host: str, port: int, tls: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the relay at host:port, over TLS when `tls` (the caller puts a
        deadline on it). Raises OSError (ProxyError for the proxy) or ssl.SSLError."""
        context = self.ssl_context() if tls else None
        proxy = self.proxy_for(host, tls)
        if proxy is None:
            return await asyncio.open_connection(host, port, ssl=context)
        reader, writer = await _connect_through(proxy, host, port)
        if context is not None:
            try:
                await writer.start_tls(context, server_hostname=host)
            except BaseException:
                writer.close()
                raise
        return reader, writer


def _os_reason(exc: OSError) -> str:
    """ "connection refused" rather than asyncio's "Connect call failed ('1.2.3.4', 3128)"."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return exc.strerror or str(exc) or type(exc).__name__


async def _connect_through(
    proxy: Proxy, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to host:port through `proxy`'s CONNECT tunnel, its answer read."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with asyncio.timeout(PROXY_CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(
                proxy.host, proxy.port, limit=PROXY_MAX_HEAD_BYTES
            )
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else _os_reason(exc)
        raise ProxyError(f"the proxy at {proxy.shown} is unreachable: {reason}") from None
    try:
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if proxy.authorization:
            head += f"Proxy-Authorization: {proxy.authorization}\r\n"
        writer.write((head + "\r\n").encode("latin-1"))
        async with asyncio.timeout(PROXY_CONNECT_TIMEOUT_S):
            await writer.drain()
            answer = await reader.readuntil(b"\r\n\r\n")
    except TimeoutError:
        writer.close()
        raise ProxyError(
            f"the proxy at {proxy.shown} did not answer CONNECT {target} in time"
        ) from None
    except asyncio.LimitOverrunError:
        writer.close()
        raise ProxyError(
            f"the proxy at {proxy.shown} answered CONNECT {target} with a head over "
            f"{PROXY_MAX_HEAD_BYTES} bytes"
        ) from None
    except (asyncio.IncompleteReadError, OSError):
        writer.close()
        raise ProxyError(
            f"the proxy at {proxy.shown} closed the connection on CONNECT {target}"
        ) from None
    except BaseException:  # cancelled (lt stopping, the caller's deadline): not left open
        writer.close()
        raise
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    if status != HTTP_OK:
        writer.close()
        said = " ".join(fields[1:]).strip() if status else repr(status_line)
        raise ProxyError(
            f"the proxy at {proxy.shown} refused CONNECT {target}: {said}", status or -1
        )
    return reader, writer
