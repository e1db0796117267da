"""Who may visit a tunnel: its rules as registration gave them (`VisitorRules`, plain values
that cross relay.face), and what the byte path checks per request, in memory only.

Basic-auth passwords are kept as HMAC-SHA256 digests under a key drawn at random when the
process starts (`_KEY`), never in plain text: the plaintext is dropped as `Access` is built
(VisitorRules, which holds it, is not kept). Why not a slow hash (scrypt, PBKDF2): the relay
checks the visitor's password on every request, and a slow hash would cost milliseconds each,
far over the budget of a request (benchmarks: at most 5%); what a slow hash defends against,
a stolen list of digests cracked offline, needs the key too, which never leaves the process
and changes at every start. The visitor's digest is compared with every entry in constant
time, with no early exit, so timing says neither whether nor which user matched.

tunnels/access.py combines the client's rules (lt --basic-auth, --cidr-allow, --cidr-deny,
--private) with its plan's and reserved name's policy into one `VisitorRules`.
"""

from __future__ import annotations

import binascii
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

from relay.protocol import (
    ACCESS_DECISIONS_CACHED,
    BASIC_AUTH_KEY_BYTES,
    MAX_AUTHORIZATION_CHARS,
    Network,
    parse_networks,
)
from relay.visitor_pass import owner_tag


@dataclass(frozen=True)
class VisitorRules:
    # "user:pass" as the client sent them: hashed when the tunnel takes them, never logged
    # (not in repr), never kept in plain text past registration.
    basic_auth: tuple[str, ...] = field(default=(), repr=False)
    # Each tuple is one list of networks (the client's, the plan's, the reserved name's) and
    # the visitor must be in every non-empty one: a source can only narrow the others.
    cidr_allow: tuple[tuple[str, ...], ...] = ()
    cidr_deny: tuple[str, ...] = ()  # all sources together
    team: bool = False  # team-only: the owner, staff, users sharing a group with the owner
    warning: bool = False  # the warning page on a browser's first navigation
    # Whose tunnel, for the warning page: a user name, or "" for an anonymous tunnel.
    owner_label: str = ""

    @property
    def empty(self) -> bool:
        return not (self.basic_auth or any(self.cidr_allow) or self.cidr_deny or self.team) and (
            not self.warning
        )


_KEY = secrets.token_bytes(BASIC_AUTH_KEY_BYTES)
_BASIC = b"basic "


def _digest(credential: bytes) -> bytes:
    return hmac.digest(_KEY, credential, "sha256")  # one-shot, in C: a quarter of hmac.new


class Access:
    """A tunnel's rules as the byte path checks them (relay/proxy/gate.py calls it): built
    once per registration from VisitorRules, every check an in-memory lookup."""

    __slots__ = (
        "allow",
        "deny",
        "cidr",
        "basic",
        "team",
        "warning",
        "owner_label",
        "owner_tag",
        "_decided",
    )

    def __init__(self, rules: VisitorRules, owner: str = "") -> None:
        # Each source's list was capped when the site parsed it; here they are combined.
        self.allow = tuple(parse_networks(group, None) for group in rules.cidr_allow if group)
        self.deny = parse_networks(rules.cidr_deny, None)
        self.cidr = bool(self.allow or self.deny)
        # The digests of "user:pass"; the plain text stays with `rules`, which is not kept.
        self.basic = tuple(_digest(pair.encode("utf-8")) for pair in rules.basic_auth)
        self.team = rules.team
        self.warning = rules.warning
        self.owner_label = rules.owner_label
        # The owner key ("user:<id>", "ip:<addr>") as the warned cookie's binding: Continue
        # on one owner's tunnel does not skip the page of the name's next owner.
        self.owner_tag = owner_tag(owner)
        self._decided: dict[str, bool] = {}

    def admits(self, address: str) -> bool:
        """May a visitor from `address` (relay.headers.client_ip's spelling) come in?"""
        decided = self._decided.get(address)
        if decided is None:
            decided = self._decide(address)
            while len(self._decided) >= ACCESS_DECISIONS_CACHED:  # oldest first, never all
                del self._decided[next(iter(self._decided))]
            self._decided[address] = decided
        return decided

    def _decide(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False  # no address (a Unix socket?) is in no allow-list; refuse
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:a.b.c.d is the IPv4 visitor a.b.c.d
        if any(_within(ip, net) for net in self.deny):
            return False
        return all(any(_within(ip, net) for net in group) for group in self.allow)

    def basic_ok(self, authorization: bytes | None) -> bool:
        """Does this Authorization header value carry one of the tunnel's user:pass pairs?"""
        if authorization is None or len(authorization) > MAX_AUTHORIZATION_CHARS:
            return False
        if authorization[: len(_BASIC)].lower() != _BASIC:
            return False
        try:  # strict base64, in C (b64decode's validate runs a regex first)
            credential = binascii.a2b_base64(authorization[len(_BASIC) :].strip(), strict_mode=True)
        except (binascii.Error, ValueError):
            return False
        offered = _digest(credential)
        matched = False
        for stored in self.basic:  # every entry, always: no early exit
            matched |= hmac.compare_digest(stored, offered)
        return matched


def _within(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, net: Network) -> bool:
    return ip.version == net.version and ip in net
