"""Who may visit the tunnel: the rules `lt` sends with every registration.

    lt --port 3000 --basic-auth alice:s3cret --cidr-allow 10.0.0.0/8 --cidr-deny 2001:db8::/32
    lt --port 3000 --private

`VisitorRules` holds them checked and normalised (a bad rule is a ValueError that says which
and why, never echoing a password); `header_value()` is the relay's `X-Tunnelsite-Access`
JSON, keys only when set; `describe()` is the banner line, with user names but no password.
The relay enforces them (relay/pool/access.py) and may add its operator's own: a client can
narrow who visits, never widen it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .limits import (
    MAX_ACCESS_HEADER_BYTES,
    MAX_BASIC_AUTH_CHARS,
    MAX_BASIC_AUTH_USERS,
    MAX_CIDRS,
    SHOWN_VALUE_CHARS,
)

# The relay's relay/protocol.py ACCESS_HEADER (the client imports no server code).
ACCESS_HEADER = "X-Tunnelsite-Access"
_CONTROL = frozenset(chr(code) for code in range(ord(" "))) | {"\x7f"}
CIDR_EXAMPLES = "examples: 203.0.113.0/24, 2001:db8::/32, 198.51.100.7"


@dataclass(frozen=True)
class VisitorRules:
    # "user:pass" each: never shown, never in repr (describe() names the users only).
    basic_auth: tuple[str, ...] = field(default=(), repr=False)
    cidr_allow: tuple[str, ...] = ()  # normalised networks ("10.0.0.0/8", "2001:db8::/32")
    cidr_deny: tuple[str, ...] = ()
    private: bool = False  # team-only: visitors sign in to the relay as the owner's team

    @property
    def empty(self) -> bool:
        return not (self.basic_auth or self.cidr_allow or self.cidr_deny or self.private)

    @property
    def users(self) -> list[str]:
        return [credential.split(":", 1)[0] for credential in self.basic_auth]

    @property
    def passwords(self) -> bool:
        """Whether the header carries a secret (kept off plain http like a token)."""
        return bool(self.basic_auth)

    def secrets(self) -> set[str]:
        """The passwords, and each "user:pass" whole, for redact.py to mask."""
        found: set[str] = set()
        for credential in self.basic_auth:
            found.update({credential, credential.split(":", 1)[1]})
        return found

    def header_value(self) -> str | None:
        """The compact JSON the relay reads from ACCESS_HEADER; None when no rule is set."""
        payload: dict[str, object] = {}
        if self.basic_auth:
            payload["basic_auth"] = list(self.basic_auth)
        if self.cidr_allow:
            payload["cidr_allow"] = list(self.cidr_allow)
        if self.cidr_deny:
            payload["cidr_deny"] = list(self.cidr_deny)
        if self.private:
            payload["private"] = True
        return json.dumps(payload, separators=(",", ":")) if payload else None

    def describe(self) -> str:
        """The rules in force for the banner: "basic-auth (alice), from 10.0.0.0/8, team
        only"; "" when none is set."""
        parts = []
        if self.basic_auth:
            parts.append(f"basic-auth ({', '.join(self.users)})")
        if self.cidr_allow:
            parts.append(f"from {' or '.join(self.cidr_allow)}")
        if self.cidr_deny:
            parts.append(f"not from {', '.join(self.cidr_deny)}")
        if self.private:
            parts.append("team only")
        return ", ".join(parts)


def check_credential(value: str) -> str:
    """One --basic-auth USER:PASS, or ValueError naming the user (never the password)."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("--basic-auth takes USER:PASS (or USER alone, to be asked for it)")
    user, password = value.split(":", 1)
    shown = user[:SHOWN_VALUE_CHARS]
    if not user:
        raise ValueError("--basic-auth: the user name is empty (use USER:PASS)")
    if not password:
        raise ValueError(f"--basic-auth for {shown!r}: the password is empty")
    if _CONTROL.intersection(user):
        raise ValueError(f"--basic-auth: the user name {shown!r} has a control character")
    if _CONTROL.intersection(password):
        raise ValueError(f"--basic-auth for {shown!r}: the password has a control character")
    if len(value) > MAX_BASIC_AUTH_CHARS:
        raise ValueError(
            f"--basic-auth for {shown!r}: USER:PASS is {len(value)} characters, the "
            f"relay takes at most {MAX_BASIC_AUTH_CHARS}"
        )
    return value


def check_cidr(value: str, flag: str) -> str:
    """One network (a bare address is its /32 or /128; host bits are cleared, as the relay
    does), normalised; ValueError with examples when it is not one."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        if not text or "%" in text:  # an IPv6 zone (fe80::1%eth0) names no network
            raise ValueError
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(
            f"{flag}: {value[:SHOWN_VALUE_CHARS]!r} is not an address or network ({CIDR_EXAMPLES})"
        ) from None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def visitor_rules(
    basic_auth: Iterable[str] = (),
    cidr_allow: Iterable[str] = (),
    cidr_deny: Iterable[str] = (),
    private: bool = False,
) -> VisitorRules:
    """The rules checked and normalised, or ValueError that says what to change."""
    if isinstance(basic_auth, str) or isinstance(cidr_allow, str) or isinstance(cidr_deny, str):
        raise ValueError("basic_auth, cidr_allow and cidr_deny are lists of strings")
    credentials = tuple(check_credential(value) for value in basic_auth)
    users = [credential.split(":", 1)[0] for credential in credentials]
    twice = sorted({user for user in users if users.count(user) > 1})
    if twice:
        raise ValueError(f"--basic-auth: {', '.join(map(repr, twice))} given more than once")
    if len(credentials) > MAX_BASIC_AUTH_USERS:
        raise ValueError(
            f"--basic-auth: at most {MAX_BASIC_AUTH_USERS} users, not {len(credentials)}"
        )
    allow = _unique(check_cidr(value, "--cidr-allow") for value in cidr_allow)
    deny = _unique(check_cidr(value, "--cidr-deny") for value in cidr_deny)
    if len(allow) + len(deny) > MAX_CIDRS:
        raise ValueError(
            f"--cidr-allow and --cidr-deny: at most {MAX_CIDRS} networks together, "
            f"not {len(allow) + len(deny)}"
        )
    rules = VisitorRules(credentials, allow, deny, bool(private))
    size = len(rules.header_value() or "")
    if size > MAX_ACCESS_HEADER_BYTES:
        raise ValueError(
            f"the visitor rules take {size} bytes, the relay takes at most "
            f"{MAX_ACCESS_HEADER_BYTES}: fewer users or networks"
        )
    return rules


def split_list(value: str) -> list[str]:
    """A list from an environment variable: commas, spaces or newlines separate."""
    return value.replace(",", " ").split()
