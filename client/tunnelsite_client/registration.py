"""Registration with the relay (`GET /?new`, `GET /<name>`) and its release (`DELETE`)."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import h11

from . import __version__
from .access import ACCESS_HEADER
from .connect import RelayConnector
from .http import Answer, ClosedWithoutAnswer, describe_error, request, split_userinfo
from .limits import (
    MAX_POOL_SOCKETS,
    POOL_SECRET_HEX_CHARS,
    REGISTER_TIMEOUT_S,
    RELEASE_TIMEOUT_S,
    STATUS_TIMEOUT_S,
    SUBDOMAIN_RE,
)
from .printable import printable
from .redact import redact_url
from .sizes import binary

USER_AGENT = f"tunnelsite-lt/{__version__}"
# Sent with a random id per tunnel run: the relay tells this client's reconnects from a
# second client asking for the same name, and closes the name on DELETE only for its holder.
CLIENT_ID_HEADER = "X-Tunnelsite-Client"
# Sent (`upgrade`) by every registration of ours unless --raw-pool: the relay gives the
# upgraded pool (pool_url, pool_secret) only to a registration that asks for it, and a raw
# pool port otherwise (an older lt sends only its client id). The same names as the relay's
# relay/protocol.py POOL_KIND_HEADER and POOL_KIND_UPGRADE (the client imports no server code).
POOL_KIND_HEADER = "X-Tunnelsite-Pool"
POOL_KIND_UPGRADE = "upgrade"
# A refusal's reason (the relay's X-Tunnelsite-Refusal); taken-over: another client took
# the name with --takeover, so this one stops instead of registering again.
REFUSAL_HEADER = "x-tunnelsite-refusal"
REFUSAL_TAKEN_OVER = "taken-over"
# An operator's lasting refusals (relay/protocol.py REFUSAL_DISCONNECTED, REFUSAL_SUSPENDED):
# the admin disconnected the tunnel (its name is refused for a cool-down), or suspended the
# name, token or user. lt stops with its own exit code instead of registering again.
REFUSAL_DISCONNECTED = "disconnected"
REFUSAL_SUSPENDED = "suspended"
OPERATOR_REFUSALS = (REFUSAL_DISCONNECTED, REFUSAL_SUSPENDED)
# Our pool secret for the name, sent when registering again: a relay that sees it is the one
# it gave out knows this client even from another address (a laptop that changed networks).
POOL_SECRET_HEADER = "Tunnelsite-Pool-Secret"
_POOL_SECRET = re.compile(f"[0-9a-f]{{{POOL_SECRET_HEX_CHARS}}}")
# A TCP tunnel (`lt tcp`; relay/protocol.py TCP_KIND_HEADER, TCP_REMOTE_PORT_HEADER): the
# registration asks for the kind, and for a port the user reserved; the answer's url is
# tcp://<host>:<tcp_port>.
TCP_KIND_HEADER = "X-Tunnelsite-Kind"
TCP_KIND = "tcp"
TCP_REMOTE_PORT_HEADER = "X-Tunnelsite-Remote-Port"
TCP_URL_PREFIX = "tcp://"


@dataclass(frozen=True)
class Registration:
    id: str
    url: str
    port: int
    max_conn_count: int
    pool_host: str  # where the pool sockets connect: `ip` from the answer, else the relay host
    cached_url: str | None = None
    # tunnelsite relays: pool connections are upgrades to this URL with this secret (never
    # shown, never in repr); None: raw pool sockets to pool_host:port (other servers).
    pool_url: str | None = None
    pool_secret: str = field(default="", repr=False)
    tcp_port: int | None = None  # a TCP tunnel's public port (its url is tcp://host:port)
    limits: str = ""  # the account's limits in words (a tunnelsite relay's `limits`); "": none


class RegistrationError(Exception):
    """The relay answered registration with an error; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s: float | None = None  # the relay's Retry-After, if any
        self.reason = ""  # the relay's X-Tunnelsite-Refusal, if any
        # Asking again will not change the answer (an unsafe pool URL, no raw pool port for
        # --raw-pool): the first registration ends the client, as a refused certificate does.
        self.lasting = False

    @property
    def taken_over(self) -> bool:
        return self.reason == REFUSAL_TAKEN_OVER

    @property
    def by_operator(self) -> bool:
        """Disconnected or suspended by the relay's operator: asking again will not help."""
        return self.reason in OPERATOR_REFUSALS


class NoTcpTunnels(RegistrationError):
    """The relay answered a TCP registration as for HTTP: it does not offer TCP tunnels, and
    asking again will not change that."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)
        self.lasting = True


class RelayUnreachable(Exception):
    """The relay could not be reached or did not answer in time."""


def is_valid_subdomain(name: str) -> bool:
    return SUBDOMAIN_RE.fullmatch(name) is not None


def auth_headers(host: str, token: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    _, basic = split_userinfo(host)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif basic:
        headers["Authorization"] = basic
    return headers


def _base(host: str) -> str:
    bare, _ = split_userinfo(host)
    return bare.rstrip("/")


def _real_status(answer: Answer) -> int:
    """The status of a refusal. A relay that took us for the npm client answers errors
    as 203 with the real status in `X-Tunnelsite-Status` (and the body's `status`)."""
    if not 200 <= answer.status < 300:
        return answer.status
    headers = {k.lower(): v for k, v in answer.headers.items()}
    candidates: list[object] = [headers.get("x-tunnelsite-status")]
    with contextlib.suppress(ValueError, AttributeError):
        candidates.append(json.loads(answer.body).get("status"))
    for value in candidates:
        if not isinstance(value, str | int | float):
            continue  # null, a list, an object: no status
        with contextlib.suppress(ValueError, OverflowError):
            if 400 <= int(value) < 600:
                return int(value)
    return answer.status


def _header(headers: dict[str, str], wanted: str) -> str | None:
    for name, value in headers.items():
        if name.lower() == wanted:
            return value.strip()
    return None


def _retry_after(headers: dict[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            with contextlib.suppress(ValueError):
                return max(0.0, float(value))
    return None


def _message(body: bytes, status: int) -> str:
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return printable(str(message)) if message else f"the relay answered HTTP {status}"


def _upgraded_pool(data: dict[str, object]) -> tuple[str, str] | None:
    """The answer's pool_url and pool_secret when both are sound: an http(s) URL with a host,
    and 64 hex digits. Else None (raw pool sockets, as with the localtunnel server)."""
    url, secret = data.get("pool_url"), data.get("pool_secret")
    if not isinstance(url, str) or not isinstance(secret, str):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if _POOL_SECRET.fullmatch(secret) is None:
        return None
    return url, secret


# The schemes in the order of their protection: a pool URL may not be weaker than the relay's.
SCHEMES_BY_STRENGTH = ("http", "https")


def _https(host: str) -> str:
    """`host` (a relay URL, without user-info) with https in place of http."""
    return "https" + _base(host).removeprefix("http")


def lasting_error(message: str) -> RegistrationError:
    error = RegistrationError(0, message)
    error.lasting = True
    return error


def check_pool_url(host: str, pool_url: str, insecure: bool) -> None:
    """Refuse a pool URL with a weaker scheme than the relay's (http from an https relay:
    every visitor's traffic would then cross in clear) unless --insecure. Another host is
    fine (a cluster sends the client to the owner node's RELAY_NODE_URL), with the same or a
    stronger scheme."""
    relay_scheme = urlsplit(_base(host)).scheme
    pool_scheme = urlsplit(pool_url).scheme
    strength = SCHEMES_BY_STRENGTH.index
    if insecure or relay_scheme not in SCHEMES_BY_STRENGTH:
        return
    if strength(pool_scheme) >= strength(relay_scheme):
        return
    raise lasting_error(
        f"the relay at {redact_url(_base(host))} is https but sent its pool connections to "
        f"{redact_url(pool_url)}, in clear: every visitor's traffic would cross unencrypted. "
        "The relay's operator must set RELAY_PUBLIC_SCHEME=https (a TLS proxy in front of the "
        "relay) or RELAY_NODE_URL=https://... in a cluster; --insecure accepts it"
    )


def parse_registration(
    host: str,
    body: bytes,
    peer_ip: str | None = None,
    *,
    raw_pool: bool = False,
    insecure: bool = False,
    tcp: bool = False,
) -> Registration:
    """The tunnel in a registration answer. A tunnelsite relay gives `pool_url` and
    `pool_secret`: pool connections are upgrades there (unless `raw_pool`, lt --raw-pool;
    an http pool URL from an https relay is refused unless `insecure`). Else raw pool sockets
    connect to `ip` when the relay gives one, else to the address that answered the
    registration (so registration and pool come from the same local address family, which
    the relay's same-IP check needs), else to the relay's host name."""
    try:
        data = json.loads(body)
        port = int(data["port"])
        ident = str(data["id"])
        url = str(data["url"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RegistrationError(0, f"the relay's answer is not a tunnel: {exc}") from exc
    upgraded = None if raw_pool else _upgraded_pool(data)
    if upgraded is not None:
        check_pool_url(host, upgraded[0], insecure)
    if upgraded is None and not 0 < port < 65536:  # the raw port is used only without one
        if raw_pool and port == 0:
            raise lasting_error(
                "the relay gave no raw pool port (it allows only upgraded, encrypted pool "
                "connections, as with RELAY_RAW_POOLS=false); run lt without --raw-pool"
            )
        raise RegistrationError(0, f"the relay's answer has a bad port: {port}")
    try:
        max_conn = min(MAX_POOL_SOCKETS, max(1, int(data.get("max_conn_count") or 1)))
    except (ValueError, TypeError):
        max_conn = 1
    pool_host = data.get("ip") or peer_ip or urlsplit(_base(host)).hostname or "localhost"
    pool_url, pool_secret = upgraded or (None, "")
    tcp_port = _tcp_port(host, data, url) if tcp else None
    return Registration(
        ident,
        url,
        port,
        max_conn,
        str(pool_host),
        data.get("cached_url"),
        pool_url,
        pool_secret,
        tcp_port,
        describe_limits(data.get("limits")),
    )


def _count(limits: dict[object, object], key: str) -> int:
    """A positive whole number of the `limits`, else 0 (absent, null, text, a bool...)."""
    value = limits.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def describe_limits(limits: object) -> str:
    """A tunnelsite relay's `limits` (the account's plan) in words, "" when it sets none or
    the value is not what a tunnelsite relay sends. `bytes_per_second` is optional (an older
    relay does not send it)."""
    if not isinstance(limits, dict):
        return ""
    parts = []
    minute, day, live, rate = (
        _count(limits, k)
        for k in ("requests_per_minute", "bytes_per_day", "live_tunnels", "bytes_per_second")
    )
    if minute:
        parts.append(f"{minute} requests a minute")
    if day:
        parts.append(f"{binary(day)} a day (UTC)")
    if rate:
        parts.append(f"{binary(rate)}/s each way")
    if live:
        parts.append(f"{live} live tunnel{'s' if live != 1 else ''}")
    if not parts:
        return ""
    plan = limits.get("plan")
    named = f"plan {printable(plan)}, " if isinstance(plan, str) and printable(plan) else ""
    return f"{', '.join(parts)} ({named}per account, all its tunnels)"


def _tcp_port(host: str, data: dict[str, object], url: str) -> int:
    """The answer's tcp_port, when the answer is a TCP tunnel's; else NoTcpTunnels (a relay
    that does not offer TCP tunnels answered as for HTTP: asking again won't help)."""
    value = data.get("tcp_port")
    port = value if isinstance(value, int) and not isinstance(value, bool) else 0
    if not 0 < port < 65536 or not url.startswith(TCP_URL_PREFIX):
        raise NoTcpTunnels(
            f"this relay ({redact_url(_base(host))}) does not offer TCP tunnels (its answer "
            "has no tcp_port); is it tunnelsite with RELAY_TCP_PORTS set?"
        )
    return port


async def register(
    host: str,
    subdomain: str | None,
    token: str | None,
    timeout_s: float = REGISTER_TIMEOUT_S,
    connector: RelayConnector | None = None,
    *,
    client_id: str = "",
    takeover: bool = False,
    pool_secret: str = "",
    raw_pool: bool = False,
    access: str | None = None,
    tcp: bool = False,
    remote_port: int | None = None,
) -> Registration:
    """Register (or register again: `pool_secret` is the secret of this name's last
    registration, so the relay knows this client from wherever it is now). Asks for the
    upgraded pool (POOL_KIND_HEADER) unless `raw_pool` (lt --raw-pool). `access`: the
    visitor rules' JSON (access.VisitorRules.header_value), sent as ACCESS_HEADER. `tcp`: a
    TCP tunnel (TCP_KIND_HEADER), on the reserved `remote_port` if given."""
    url = f"{_base(host)}/" + (quote(subdomain, safe="") if subdomain else "?new")
    if subdomain and takeover:
        url += "?takeover=1"
    headers = auth_headers(host, token)
    if client_id:
        headers[CLIENT_ID_HEADER] = client_id
    if not raw_pool:
        headers[POOL_KIND_HEADER] = POOL_KIND_UPGRADE
    if pool_secret and subdomain:
        headers[POOL_SECRET_HEADER] = pool_secret
    if access:
        headers[ACCESS_HEADER] = access
    if tcp:
        headers[TCP_KIND_HEADER] = TCP_KIND
        if remote_port is not None:
            headers[TCP_REMOTE_PORT_HEADER] = str(remote_port)
    try:
        answer = await request("GET", url, headers, timeout_s, connector)
    except ClosedWithoutAnswer as exc:
        hint = ""
        if urlsplit(_base(host)).scheme == "http":
            hint = f" (if it serves https on that port: --host {_https(host)})"
        raise RelayUnreachable(f"{exc}{hint}") from exc
    except (OSError, TimeoutError) as exc:
        raise RelayUnreachable(describe_error(exc)) from exc
    except h11.ProtocolError as exc:  # not an HTTP relay
        raise RelayUnreachable(f"bad answer from the relay: {exc}") from exc
    if 300 <= answer.status < 400:
        # A relay's plain-http port that redirects to https (RELAY_HTTP_REDIRECT_PORT): lt
        # follows no redirect with a token in it; the user's --host is what needs changing.
        location = _header(answer.headers, "location") or ""
        target = urlsplit(location)
        where = f"{target.scheme}://{target.netloc}" if target.scheme and target.netloc else ""
        raise lasting_error(
            f"the relay answered {answer.status} redirecting to "
            f"{where or 'another address'}: run lt with --host {where or '<that address>'}"
        )
    if answer.status != 200:
        status = _real_status(answer)
        error = RegistrationError(status, _message(answer.body, status))
        error.retry_after_s = _retry_after(answer.headers)
        error.reason = _header(answer.headers, REFUSAL_HEADER) or ""
        raise error
    insecure = connector.insecure if connector is not None else False
    return parse_registration(
        host, answer.body, answer.peer_ip, raw_pool=raw_pool, insecure=insecure, tcp=tcp
    )


async def release(
    host: str,
    tunnel_id: str,
    token: str | None,
    timeout_s: float = RELEASE_TIMEOUT_S,
    connector: RelayConnector | None = None,
    *,
    client_id: str = "",
) -> int | None:
    """DELETE the tunnel so its name is freed at once. Returns the status, None on failure.

    404/405 are expected from plain localtunnel servers and are harmless; so is 409 (the
    name is another client's now, and the relay leaves it alone).
    """
    url = f"{_base(host)}/api/tunnels/{quote(tunnel_id, safe='')}"
    headers = auth_headers(host, token)
    if client_id:
        headers[CLIENT_ID_HEADER] = client_id
    try:
        answer = await request("DELETE", url, headers, timeout_s, connector)
    except Exception:  # best effort on the way out
        return None
    return answer.status


async def limit_reached(host: str, name: str, connector: RelayConnector | None) -> str | None:
    """The account limit the tunnel `name` has reached ("" none), from its status on a
    tunnelsite relay; None when the relay did not answer soundly."""
    url = f"{_base(host)}/api/tunnels/{quote(name, safe='')}/status"
    try:
        answer = await request("GET", url, {}, STATUS_TIMEOUT_S, connector)
        data = json.loads(answer.body) if 200 <= answer.status < 300 else None
    except (OSError, TimeoutError, ValueError, h11.ProtocolError):
        return None
    if not isinstance(data, dict):
        return None
    reached = data.get("limit_reached", "")
    return printable(reached) if isinstance(reached, str) else ""
