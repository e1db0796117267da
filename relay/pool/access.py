"""Who may visit a tunnel: its rules as registration gave them (`VisitorRules`, plain values
that cross relay.face), and what the byte path checks per request, in memory only.

tunnels/access.py combines the client's rules (lt --basic-auth, --cidr-allow, --cidr-deny,
--private) with its plan's and reserved name's policy into one `VisitorRules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


class Access:
    """A tunnel's rules as the byte path checks them (relay/proxy/gate.py calls it)."""

    __slots__ = ("rules",)

    def __init__(self, rules: VisitorRules) -> None:
        self.rules = rules  # to be replaced by precompiled checks (issue 13)
