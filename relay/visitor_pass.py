"""What the relay signs for a tunnel's visitors, and checks on every request that carries one:
a team-only tunnel's one-time ticket (the bare domain's sign-in issues it), the access cookie
it is exchanged for, and the warning page's "warned" cookie.

A signed value is `<payload>.<mac>`, both base64url without padding. The payload is
`kind:name:owner:user:issued_ms:expires_s[:nonce]`, where owner is the
tunnel owner's user id when the pass was issued (0: an anonymous tunnel), or for a warned
cookie `owner_tag` of the owner key (anonymous owners too): the gate compares it with the
tunnel's owner now, so a pass into A's tunnel opens nothing, and A's Continue skips no page,
when B registers the same name later; the mac is HMAC-SHA256 over the payload under a
key derived from SECRET_KEY with its own label (as relay/cluster/hop.py derives the hop key),
so every node of a cluster verifies what any node or the site signed, and a value signed for
one purpose (kind) or one tunnel (name) is refused for any other. Verification never raises:
garbage, oversized values, other kinds, other names and expired values are all None.

Under the public development key (settings.DEVELOPMENT_SECRET_KEY) passes still work, so a
single machine can try team-only tunnels, but anyone can forge them: docs/security.md says
so, and a relay on the internet must set SECRET_KEY (DEBUG off refuses to start without it).

Two memories, per relay process, bounded (protocol.TICKETS_REMEMBERED,
protocol.SIGNED_OUT_REMEMBERED):
- spent tickets, by nonce, until they expire: a ticket is good once. A team-only tunnel's
  requests all reach the node that owns it, so one node's memory is the cluster's.
- signed-out users (from `visitor.signout` control messages, relay/cluster/control.py): a
  pass issued to the user before that moment is refused, until it would have expired anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed

from relay.protocol import (
    FULL_MEMORY_WARNING_EVERY_S,
    MAX_PASS_CHARS,
    OWNER_TAG_BYTES,
    PASS_MAC_BYTES,
    PASS_NONCE_BYTES,
    PASS_STAMPS_PER_S,
    SIGNED_OUT_REMEMBERED,
    TICKET_MAX_AGE_S,
    TICKETS_REMEMBERED,
    is_valid_subdomain,
)

TICKET = "t"
ACCESS = "a"
WARNED = "w"
_KINDS = frozenset({TICKET, ACCESS, WARNED})


logger = logging.getLogger(__name__)

_derived: list[bytes] = []  # the key, derived once from SECRET_KEY (empty: not yet)


def _key() -> bytes:
    """The passes' HMAC key: derived on first use, then a list lookup per sign or verify."""
    if not _derived:
        _derived.append(
            hashlib.sha256(b"tunnelsite.visitor-pass|" + settings.SECRET_KEY.encode()).digest()
        )
    return _derived[0]


def _forget_key(*, setting: str, **_: object) -> None:
    """SECRET_KEY changed (override_settings in tests): derive the key again when next used."""
    if setting == "SECRET_KEY":
        _derived.clear()


setting_changed.connect(_forget_key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "==")  # the padding it lacks; extra is ignored


@dataclass(frozen=True)
class Pass:
    kind: str
    name: str
    owner_user_id: int  # the tunnel's owner it was issued for (0: anonymous); warned: owner_tag
    user_id: int  # 0 for a warned cookie
    issued_ms: int
    expires: int  # unix seconds
    nonce: str


def sign(
    kind: str,
    name: str,
    user_id: int,
    max_age_s: float,
    now: float | None = None,
    *,
    owner_user_id: int | None = None,
) -> str:
    """A signed value of `kind` for the tunnel `name` of `owner_user_id` (None: anonymous),
    good for `max_age_s` seconds."""
    moment = time.time() if now is None else now
    nonce = _b64(secrets.token_bytes(PASS_NONCE_BYTES)) if kind == TICKET else ""
    issued = int(moment * PASS_STAMPS_PER_S)
    owner = int(owner_user_id or 0)
    payload = f"{kind}:{name}:{owner}:{int(user_id)}:{issued}:{int(moment + max_age_s)}:{nonce}"
    raw = payload.encode("ascii")
    mac = hmac.new(_key(), raw, hashlib.sha256).digest()[:PASS_MAC_BYTES]
    return f"{_b64(raw)}.{_b64(mac)}"


def verify(
    value: str | bytes,
    kind: str,
    name: str,
    now: float | None = None,
    *,
    owner_user_id: int | None = None,
) -> Pass | None:
    """The pass `value` is, when it is a current `kind` signed for the tunnel `name` of
    `owner_user_id` (None: anonymous); None for anything else (never raises). Spent tickets
    and signed-out users are the caller's (see `spend` and `SignedOut`)."""
    try:
        text = value.decode("ascii") if isinstance(value, bytes) else value
        if len(text) > MAX_PASS_CHARS or text.count(".") != 1:
            return None
        encoded, mac_text = text.split(".")
        raw = _unb64(encoded)
        mac = _unb64(mac_text)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        return None
    expected = hmac.new(_key(), raw, hashlib.sha256).digest()[:PASS_MAC_BYTES]
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        kind_, name_, owner, user, issued, expires, nonce = raw.decode("ascii").split(":")
        found = Pass(kind_, name_, int(owner), int(user), int(issued), int(expires), nonce)
    except (UnicodeDecodeError, ValueError):
        return None
    if found.kind != kind or found.kind not in _KINDS or found.name != name:
        return None
    if found.owner_user_id != int(owner_user_id or 0):  # the name has another owner now
        return None
    if found.expires < (time.time() if now is None else now):
        return None
    return found


def owner_tag(owner: str) -> int:
    """A tunnel owner's key ("user:<id>", "ip:<addr>") as the number a warned cookie is bound
    to: a name's next owner (an anonymous one too) shows the warning page again."""
    digest = hashlib.sha256(b"tunnelsite.owner|" + owner.encode("utf-8")).digest()
    return int.from_bytes(digest[:OWNER_TAG_BYTES], "big")


def issue_ticket(name: str, user_id: int, *, owner_user_id: int | None) -> str:
    """A one-time ticket for `user_id` into the team-only tunnel `name` as `owner_user_id`
    (None: anonymous) holds it now (relay.face)."""
    if not is_valid_subdomain(name):
        raise ValueError(f"not a tunnel name: {name!r}")
    return sign(TICKET, name, user_id, TICKET_MAX_AGE_S, owner_user_id=owner_user_id)


class SpentTickets:
    """Nonces of tickets already exchanged, each until its ticket expires."""

    __slots__ = ("_spent", "limit", "full", "_warned_at")

    def __init__(self, limit: int = TICKETS_REMEMBERED) -> None:
        self._spent: dict[str, int] = {}  # nonce -> expiry (unix seconds), oldest first
        self.limit = limit
        self.full = False  # the last refusal was for want of room, not a reused ticket
        self._warned_at = -FULL_MEMORY_WARNING_EVERY_S

    def spend(self, ticket: Pass, now: float | None = None) -> bool:
        """True the first time a (verified, unexpired) ticket is spent; False after, and
        when the memory is full of unexpired tickets (refusing beats forgetting one: then
        `full` is True, and the log warns at most once per FULL_MEMORY_WARNING_EVERY_S)."""
        self.full = False
        if not ticket.nonce or ticket.nonce in self._spent:
            return False
        if len(self._spent) >= self.limit:
            moment = time.time() if now is None else now
            self._spent = {n: e for n, e in self._spent.items() if e >= moment}
            if len(self._spent) >= self.limit:
                self.full = True
                self._warn_full()
                return False
        self._spent[ticket.nonce] = ticket.expires
        return True

    def _warn_full(self) -> None:
        now = time.monotonic()
        if now - self._warned_at >= FULL_MEMORY_WARNING_EVERY_S:
            self._warned_at = now
            logger.warning(
                "%d unexpired team sign-in tickets were exchanged within %d s: every further "
                "ticket is refused until some expire (TICKETS_REMEMBERED)",
                self.limit,
                TICKET_MAX_AGE_S,
            )


class SignedOut:
    """User id -> when (unix ms) the user last signed out on the bare domain. A pass issued
    at or before that is refused. Entries older than the longest pass's life are dropped:
    every pass they could refuse has expired. When the memory is full of recent sign-outs,
    the oldest goes, and with it the one thing that refused its user's older passes; so the
    memory keeps a watermark, the newest dropped sign-out's moment, and refuses every pass
    issued at or before it, whoever holds it: full fails closed (everyone signs in again),
    never open."""

    __slots__ = ("_at", "limit", "watermark_ms")

    def __init__(self, limit: int = SIGNED_OUT_REMEMBERED) -> None:
        self._at: dict[int, int] = {}
        self.limit = limit
        self.watermark_ms = 0

    def note(self, user_id: int, at_ms: int) -> None:
        previous = self._at.pop(user_id, 0)  # re-inserted last: the dict stays oldest first
        self._at[user_id] = max(at_ms, previous)
        if len(self._at) > self.limit:
            self._prune(time.time())
        while len(self._at) > self.limit:  # all recent: the oldest sign-out goes first
            dropped = next(iter(self._at))
            self.watermark_ms = max(self.watermark_ms, self._at.pop(dropped))

    def _prune(self, now: float) -> None:
        life_s = max(settings.RELAY_VISITOR_COOKIE_MAX_AGE_S, TICKET_MAX_AGE_S)
        horizon = int((now - life_s) * PASS_STAMPS_PER_S)
        self._at = {u: at for u, at in self._at.items() if at >= horizon}

    def still_in(self, found: Pass) -> bool:
        """Was `found` issued after its user last signed out (or did the user never), and
        after every sign-out the memory had to drop?"""
        if found.issued_ms <= self.watermark_ms:
            return False
        at = self._at.get(found.user_id)
        return at is None or found.issued_ms > at

    def __len__(self) -> int:
        return len(self._at)


# One of each per relay process: what the control listener and the gate share.
spent_tickets = SpentTickets()
signed_out = SignedOut()


def signout_message(user_id: int, now: float | None = None) -> dict[str, object]:
    """The control message that ends `user_id`'s passes issued before now, on every relay."""
    moment = time.time() if now is None else now
    return {
        "type": "visitor.signout",
        "user_id": int(user_id),
        "at_ms": int(moment * PASS_STAMPS_PER_S),
    }


def obey_signout(message: dict[str, object]) -> bool:
    """Note a `visitor.signout` message; False when it is malformed (ignored)."""
    user_id, at_ms = message.get("user_id"), message.get("at_ms")
    if type(user_id) is not int or type(at_ms) is not int:
        return False
    signed_out.note(user_id, at_ms)
    return True
