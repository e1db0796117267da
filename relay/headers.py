"""Which headers cross the relay, in each direction (RFC 9110 section 7.6.1)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from django.conf import settings

from relay.asgi_types import Scope
from relay.protocol import (
    ACCESS_COOKIE,
    CLIENT_ADDRESS_HEADERS,
    FORWARDED_HEADERS,
    HOP_BY_HOP,
    HOP_HEADER,
    HOST_COOKIE_PREFIX,
    VISITOR_KEYS_CACHED,
    WARNED_COOKIE,
)
from relay.request_settings import IPNetwork, request_settings

# Requests: hop-by-hop and framing headers are set by the relay itself; `expect` was
# already answered by the public server, which has the whole body.
# HOP_HEADER is the marker between relay nodes (relay/cluster/hop.py): never the visitor's to
# send, so it is dropped even on a single node.
_REQUEST_DROP = HOP_BY_HOP | FORWARDED_HEADERS | CLIENT_ADDRESS_HEADERS | {b"expect", HOP_HEADER}
# Responses keep Content-Length (the public server frames with it); the rest is hop-by-hop.
_RESPONSE_DROP = HOP_BY_HOP - {b"content-length"}
# The relay's visitor cookies in both spellings (relay/proxy/gate.py sets and reads them).
_RELAY_COOKIES = frozenset(
    (prefix + name).encode()
    for name in (ACCESS_COOKIE, WARNED_COOKIE)
    for prefix in ("", HOST_COOKIE_PREFIX)
)
_RELAY_COOKIES_LOWER = frozenset(name.lower() for name in _RELAY_COOKIES)
_COOKIE_STEMS = (ACCESS_COOKIE.encode(), WARNED_COOKIE.encode())  # in both spellings


def _connection_tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def request_headers(scope: Scope) -> tuple[list[tuple[bytes, bytes]], bytes | None, bool]:
    """Headers for the tunnel client, the visitor's Content-Length, and whether the
    visitor sent framing headers at all (so an empty POST still says `Content-Length: 0`).
    """
    raw = scope["headers"]
    named: set[bytes] = set()
    for name, value in raw:
        if name == b"connection":
            named |= _connection_tokens(value)
    out: list[tuple[bytes, bytes]] = []
    host = b""
    length: bytes | None = None
    framing = False
    forwarded_for: list[bytes] = []  # several lines are one comma-separated list
    forwarded_proto = b""
    for name, value in raw:
        if name in _REQUEST_DROP or name in named:
            if name == b"content-length":
                length, framing = value, True
            elif name == b"transfer-encoding":
                framing = True
            elif name == b"x-forwarded-for":
                forwarded_for.append(value)
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
            continue
        if name == b"host":
            host = value
        out.append((name, value))
    client = scope.get("client") or ("", 0)
    peer = client[0] or ""
    proto = request_settings().public_scheme.encode()
    chain = peer.encode()
    visitor = peer  # client_ip(scope), without asking again whether the peer is trusted
    if _trusted(peer):
        if forwarded_for:
            chain = b", ".join([*forwarded_for, chain])
        if forwarded_proto in (b"http", b"https"):
            proto = forwarded_proto
        visitor = _client_ip(scope)
    out.append((b"x-forwarded-for", chain))
    out.append((b"x-real-ip", normal_ip(visitor).encode()))
    out.append((b"x-forwarded-proto", proto))
    if host:
        out.append((b"x-forwarded-host", host))
    return out, length, framing


def request_target(scope: Scope) -> bytes:
    """The request target as the visitor sent it: raw path plus query string."""
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target = target + b"?" + scope["query_string"]
    return target


def response_headers(
    raw: Iterable[tuple[bytes, bytes]], app: bool = True
) -> list[tuple[bytes, bytes]]:
    """A response's headers for the visitor. `app`: the tunnel's app answered (not another
    relay node), so its Set-Cookie for the relay's visitor cookies is dropped."""
    named: set[bytes] = set()
    for name, value in raw:
        if name == b"connection":
            named |= _connection_tokens(value)
    return [
        (n, host_only_cookie(v, settings.RELAY_DOMAIN) if n == b"set-cookie" else v)
        for n, v in raw
        if n not in _RESPONSE_DROP
        and n not in named
        and not (app and n == b"set-cookie" and _relay_cookie(v))
    ]


def _relay_cookie(value: bytes) -> bool:
    """Does an app's Set-Cookie name one of the relay's visitor cookies? Those are the
    relay's alone (relay/proxy/gate.py): an app cannot set, overwrite or expire them."""
    return value.split(b"=", 1)[0].strip().lower() in _RELAY_COOKIES_LOWER


# --- the relay's visitor cookies -------------------------------------------------------------
def secure_scope(scope: Scope) -> bool:
    """Does the visitor reach this tunnel over https (directly, or the relay's public URL)?"""
    return scope.get("scheme") in ("https", "wss") or request_settings().public_scheme == "https"


def relay_cookie_name(name: str, scope: Scope) -> str:
    """The spelling of the relay's cookie `name` for this visitor: __Host- on https."""
    return HOST_COOKIE_PREFIX + name if secure_scope(scope) else name


def has_relay_cookie(value: bytes) -> bool:
    """Might this Cookie header carry one of the relay's cookies (either spelling)?"""
    return any(stem in value for stem in _COOKIE_STEMS)


def relay_cookie(scope: Scope, name: str) -> bytes | None:
    """The value of the relay's cookie `name` in the spelling this visitor's scheme uses
    (the last one, if several): on https only the __Host- one, which no other host can set."""
    wanted = relay_cookie_name(name, scope).encode()
    found = None
    for header, value in scope["headers"]:
        if header != b"cookie" or wanted not in value:
            continue
        for piece in value.split(b";"):
            key, sep, rest = piece.strip().partition(b"=")
            if sep and key == wanted:
                found = rest
    return found


def strip_relay_cookies(value: bytes) -> bytes:
    """A Cookie header's value without the relay's cookies (both spellings); the others
    byte for byte."""
    if not has_relay_cookie(value):
        return value
    kept = [
        piece
        for piece in value.split(b";")
        if piece.strip().partition(b"=")[0] not in _RELAY_COOKIES
    ]
    return b";".join(kept).lstrip(b" \t")


def relay_cookie_line(name: str, value: str, max_age: int, scope: Scope) -> bytes:
    """The Set-Cookie value of the relay's cookie `name`: host-only (no Domain), Path=/,
    HttpOnly, SameSite=Lax; on https Secure and the __Host- spelling."""
    secure = secure_scope(scope)
    spelled = HOST_COOKIE_PREFIX + name if secure else name
    line = f"{spelled}={value}; Path=/; Max-Age={int(max_age)}; HttpOnly; SameSite=Lax"
    return (line + ("; Secure" if secure else "")).encode()


def host_only_cookie(value: bytes, relay_domain: str) -> bytes:
    """A tunnel's `Set-Cookie` without a `Domain` naming the relay's domain or a parent of it.

    `Domain=.localhost` from `evil.localhost` would reach the admin on `localhost` and every
    other tunnel (cookie tossing: a forged `sessionid` or `csrftoken`). Without the attribute
    the cookie is host-only: it belongs to the tunnel that set it, and to nothing else.
    """
    if b"domain" not in value.lower():
        return value
    pair, *attributes = value.split(b";")
    domain = relay_domain.encode("ascii", "ignore").lower().strip(b".")
    kept = [a for a in attributes if not _covers_domain(a, domain)]
    if len(kept) == len(attributes):
        return value
    return b";".join([pair, *kept])


def _covers_domain(attribute: bytes, domain: bytes) -> bool:
    """Is this cookie attribute `Domain=<domain or one of its parents>` (any case, dots)?"""
    key, _, target = attribute.partition(b"=")
    if key.strip().lower() != b"domain":
        return False
    target = target.strip().lower().strip(b".")
    return bool(target) and (domain == target or domain.endswith(b"." + target))


def _trusted(peer: str) -> bool:
    return in_networks(peer, request_settings().trusted_proxies)


def in_networks(peer: str, networks: Sequence[IPNetwork]) -> bool:
    """Is the address `peer` in one of `networks` (RELAY_TRUSTED_PROXIES and the like)?"""
    if not networks or not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    # A dual-stack socket spells an IPv4 peer ::ffff:a.b.c.d; it is the same proxy.
    mapped = getattr(address, "ipv4_mapped", None)
    return any(address in net or (mapped is not None and mapped in net) for net in networks)


def is_trusted_proxy(peer: str) -> bool:
    """Is `peer` in RELAY_TRUSTED_PROXIES (so its connections carry many visitors)?"""
    return _trusted(peer)


def client_ip(scope: Scope) -> str:
    """The visitor's address (see _client_ip), spelled one way (see normal_ip)."""
    return normal_ip(_client_ip(scope))


def _client_ip(scope: Scope) -> str:
    """The visitor's address: the peer, or the last untrusted hop a trusted proxy names."""
    client = scope.get("client") or ("", 0)
    peer = client[0] or ""
    if not _trusted(peer):
        return peer
    chain = ",".join(
        value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"
    )
    hops = [h.strip() for h in chain.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_address(hop):
            return peer  # a garbled chain names nobody; the proxy is all we know
        if not _trusted(hop):
            return hop
    return peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=VISITOR_KEYS_CACHED)
def normal_ip(text: str) -> str:
    """One spelling per address: IPv4-mapped IPv6 folded, IPv6 compressed and lowercase.
    Read per request of a tunnel with CIDR rules (client_ip): a visitor's few spellings are
    remembered, as parsing an address each time cost a third of the rules' check."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def address_key(text: str, ipv6_prefix: int) -> str:
    """The address an owner or a limit counts by: an IPv4 address as it is, an IPv6 one as
    its network of `ipv6_prefix` bits (a home or a server gets a whole /64, so counting
    single IPv6 addresses lets one network escape every per-address limit)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if ipv6_prefix < 128:
            return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)
