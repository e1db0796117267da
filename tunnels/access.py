"""Who may visit a tunnel, as registration decides it: the client's rules (our lt's
`X-Tunnelsite-Access` header, parsed strictly here) combined with the operator's policy on the
tunnel's plan and reserved name into one relay.face.VisitorRules.

Policy wins: a client can only tighten it. Each source's allow list is kept apart (a visitor
must be in every non-empty one), the deny lists are joined, and any source asking for team
only (or "required" with no password from the client) makes the tunnel team only. Nothing
here logs or echoes a password: errors name the entry's position, never its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.face import VisitorRules
from relay.protocol import (
    ACCESS_HEADER,
    MAX_ACCESS_HEADER_BYTES,
    MAX_BASIC_AUTH_CHARS,
    MAX_BASIC_AUTH_USERS,
    MAX_CIDRS,
)
from tunnels import cidrs, request_json
from tunnels.models import VisitorPolicy

KEYS = ("basic_auth", "cidr_allow", "cidr_deny", "private")
# The longest network a client may send: an IPv6 address in full with a prefix is 43 chars.
MAX_CIDR_CHARS = 64

ANONYMOUS_TEAM = (
    "A team-only tunnel (--private) needs an account: its visitors sign in as members of the "
    "owner's team. Save a token with `lt login --host <this relay> --token TOKEN` (ask the "
    "relay's operator for one), or leave out --private."
)


class BadRules(ValueError):
    """The client's rules cannot be used; `message` says what to fix (never a password)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ClientRules:
    """What a client asked for, validated (networks normalised: 10.1.2.3/8 is 10.0.0.0/8)."""

    basic_auth: tuple[str, ...] = ()
    cidr_allow: tuple[str, ...] = ()
    cidr_deny: tuple[str, ...] = ()
    private: bool = False

    def __repr__(self) -> str:  # never the passwords
        return (
            f"ClientRules(basic_auth=<{len(self.basic_auth)} users>, "
            f"cidr_allow={self.cidr_allow!r}, cidr_deny={self.cidr_deny!r}, "
            f"private={self.private!r})"
        )


@dataclass(frozen=True)
class Policy:
    """An operator's VisitorPolicy row (a Plan or a ReservedSubdomain) as plain values, read
    in registration's one database call."""

    visitor_auth: str = VisitorPolicy.AUTH_CLIENT
    cidr_allow: tuple[str, ...] = ()
    cidr_deny: tuple[str, ...] = ()
    warning_page: str = VisitorPolicy.WARNING_DEFAULT

    @classmethod
    def of(cls, row: VisitorPolicy | None) -> Policy | None:
        if row is None:
            return None
        return cls(
            visitor_auth=row.visitor_auth,
            cidr_allow=_networks(cidrs.lines(row.cidr_allow)),
            cidr_deny=_networks(cidrs.lines(row.cidr_deny)),
            warning_page=row.warning_page,
        )


def _networks(values: list[str]) -> tuple[str, ...]:
    """Normalised; a row saved past its validator (a raw UPDATE) keeps its valid lines."""
    kept: list[str] = []
    for value in values:
        try:
            kept.extend(str(network) for network in cidrs.parse([value]))
        except ValueError:
            continue
    return tuple(dict.fromkeys(kept))


# --- the client's header ------------------------------------------------------------------------
def parse_header(value: str | None) -> ClientRules:
    """The rules in our lt's ACCESS_HEADER (None: the header was not sent, no rules); raises
    BadRules saying exactly what is wrong. `value` is the header as Django gives it (latin-1
    decoded bytes): UTF-8 is restored here."""
    if value is None:
        return ClientRules()
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "replace")
    if len(raw) > MAX_ACCESS_HEADER_BYTES:
        raise BadRules(
            f"The {ACCESS_HEADER} header is {len(raw)} bytes; at most "
            f"{MAX_ACCESS_HEADER_BYTES} are accepted. Send fewer rules."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRules(f"The {ACCESS_HEADER} header is not UTF-8.") from None
    try:
        data = request_json.loads(
            text, max_bytes=MAX_ACCESS_HEADER_BYTES, object_pairs_hook=_no_duplicates
        )
    except request_json.BadJson as exc:
        raise BadRules(
            f"The {ACCESS_HEADER} header is not JSON ({exc.reason}): send an object such as "
            '{"basic_auth": ["user:pass"], "cidr_allow": ["203.0.113.0/24"]}.'
        ) from None
    if not isinstance(data, dict):
        raise BadRules(f"The {ACCESS_HEADER} header must be a JSON object, not {_kind(data)}.")
    unknown = sorted(str(key) for key in data if key not in KEYS)
    if unknown:
        shown = ", ".join(repr(key[:40]) for key in unknown[:5])
        raise BadRules(
            f"Unknown key(s) in the {ACCESS_HEADER} header: {shown}; the keys are "
            + ", ".join(KEYS)
            + "."
        )
    private = data.get("private", False)
    if not isinstance(private, bool):
        raise BadRules(f'"private" must be true or false, not {_kind(private)}.')
    allow = _cidr_list(data, "cidr_allow")
    deny = _cidr_list(data, "cidr_deny")
    if len(allow) + len(deny) > MAX_CIDRS:
        raise BadRules(
            f"At most {MAX_CIDRS} networks in cidr_allow and cidr_deny together, "
            f"not {len(allow) + len(deny)}."
        )
    return ClientRules(
        basic_auth=_basic_auth(data.get("basic_auth", [])),
        cidr_allow=allow,
        cidr_deny=deny,
        private=private,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise BadRules(f"A key appears twice in the {ACCESS_HEADER} header.")
    return dict(pairs)


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _strings(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise BadRules(f'"{key}" must be a list of strings, not {_kind(value)}.')
    for index, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise BadRules(f'"{key}" entry {index} must be a string, not {_kind(item)}.')
    return value


def _basic_auth(value: object) -> tuple[str, ...]:
    entries = _strings({"basic_auth": value}, "basic_auth")
    if len(entries) > MAX_BASIC_AUTH_USERS:
        raise BadRules(f"At most {MAX_BASIC_AUTH_USERS} basic-auth users, not {len(entries)}.")
    seen: set[str] = set()
    for index, entry in enumerate(entries, 1):
        # Only the position is named: the entry holds a password.
        where = f"basic_auth entry {index}"
        if len(entry) > MAX_BASIC_AUTH_CHARS:
            raise BadRules(
                f"{where} is longer than {MAX_BASIC_AUTH_CHARS} characters (user:password)."
            )
        user, colon, password = entry.partition(":")
        if not colon:
            raise BadRules(f'{where} must be "user:password" (it has no ":").')
        if not user:
            raise BadRules(f"{where} has an empty user name.")
        if not password:  # a tunnel "protected" by no password would only look protected
            raise BadRules(f"{where} has an empty password.")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in entry):
            raise BadRules(f"{where} holds a control character; browsers cannot send it.")
        if user in seen:
            raise BadRules(f"{where} names a user that an earlier entry names already.")
        seen.add(user)
    return tuple(entries)


def _cidr_list(data: dict[str, Any], key: str) -> tuple[str, ...]:
    entries = _strings(data, key)
    if len(entries) > MAX_CIDRS:
        raise BadRules(f'At most {MAX_CIDRS} networks in "{key}", not {len(entries)}.')
    for index, entry in enumerate(entries, 1):
        if len(entry) > MAX_CIDR_CHARS or not entry.strip():
            raise BadRules(f'"{key}" entry {index} is not an address or network.')
    try:
        networks = cidrs.parse(entries)
    except ValueError as exc:
        raise BadRules(f'"{key}": {exc}') from None
    return tuple(dict.fromkeys(str(network) for network in networks))


# --- combining: policy wins, the client only tightens ---------------------------------------
def visitor_rules(
    client: ClientRules,
    *,
    anonymous: bool,
    owner_label: str,
    plan: Policy | None,
    reserved: Policy | None,
    interstitial: str,
) -> VisitorRules:
    """One tunnel's rules; raises BadRules (a 403) for a team-only tunnel with no account."""
    policies = [policy for policy in (plan, reserved) if policy is not None]
    auths = {policy.visitor_auth for policy in policies}
    team = (
        client.private
        or VisitorPolicy.AUTH_TEAM in auths
        or (VisitorPolicy.AUTH_REQUIRED in auths and not client.basic_auth)
    )
    if team and anonymous:
        raise BadRules(ANONYMOUS_TEAM)
    allow = tuple(
        source
        for source in (client.cidr_allow, *(policy.cidr_allow for policy in policies))
        if source
    )
    deny = tuple(
        dict.fromkeys(
            network
            for source in (client.cidr_deny, *(policy.cidr_deny for policy in policies))
            for network in source
        )
    )
    return VisitorRules(
        basic_auth=client.basic_auth,
        cidr_allow=allow,
        cidr_deny=deny,
        team=team,
        warning=_warning(anonymous, plan, reserved, interstitial),
        owner_label="" if anonymous else owner_label,
    )


def _warning(
    anonymous: bool, plan: Policy | None, reserved: Policy | None, interstitial: str
) -> bool:
    """The reserved name's choice, else the plan's, else RELAY_INTERSTITIAL."""
    for policy in (reserved, plan):
        if policy is not None and policy.warning_page in (
            VisitorPolicy.WARNING_ON,
            VisitorPolicy.WARNING_OFF,
        ):
            return policy.warning_page == VisitorPolicy.WARNING_ON
    if interstitial == "all":
        return True
    return interstitial == "anonymous" and anonymous
