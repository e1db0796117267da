"""The visitor gate: who may reach a tunnel's app, decided before the request touches a pool
socket (HTTP and WebSocket alike), only for a tunnel with rules (`tunnel.access`).

In order: the relay's own paths on the tunnel host (TICKET_PATH: a team-only sign-in's ticket
becomes an access cookie; CONTINUE_PATH: the warning page's Continue), the CIDR rules (403),
basic auth (401 with `WWW-Authenticate: Basic`), team-only (an access cookie or an allowed
user's `Authorization: Bearer <API token>`; a browser is sent to sign in on the bare
domain, anything else gets a 401), the warning page (200, a browser's first navigation).

`check` returns the scope to forward (the Authorization header that satisfied the relay and
the relay's cookies removed) or an `Answer` to send instead. Per request everything is an
in-memory lookup. Its parts: relay/proxy/warning.py (the warning page, Continue's cookie) and
relay/proxy/team.py (a team pass's holder and a Bearer token's user, asked of the database
at most once per TEAM_ANSWER_TTL_S, cached and rate-limited there).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode

from django.conf import settings

from relay import visitor_pass as passes
from relay.asgi_types import Message, Scope
from relay.errors import error_response, wants_json
from relay.headers import (
    client_ip,
    has_relay_cookie,
    relay_cookie_line,
    strip_relay_cookies,
)
from relay.pool.access import Access
from relay.pool.quota import visitor_key
from relay.protocol import (
    ACCESS_COOKIE,
    BYPASS_WARNING_HEADER,
    CONTINUE_PATH,
    MAX_FORM_FIELDS,
    MAX_NEXT_CHARS,
    NEXT_PARAM,
    TEAM_SIGNIN_PATH,
    TICKET_MAX_AGE_S,
    TICKET_PARAM,
    TICKET_PATH,
    TUNNEL_PARAM,
    VISITOR_PATH_PREFIX,
    local_path,
)
from relay.proxy import team, warning
from relay.stats import STATS


@dataclass
class Answer:
    """What the relay answers instead of the app: status, headers, body; `message` for a
    WebSocket handshake, which only carries a JSON message (relay/proxy/websocket.py)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    message: str = ""


class _Seen:
    """What one scan of the request's headers found."""

    __slots__ = ("authorization", "cookies", "accept", "mode", "site", "agent", "bypass")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.authorization: list[bytes] = []
        self.cookies = False
        self.accept = self.mode = self.site = self.agent = b""
        self.bypass = False
        for name, value in headers:
            if name == b"authorization":
                self.authorization.append(value)
            elif name == b"cookie":
                self.cookies = self.cookies or has_relay_cookie(value)
            elif name == b"accept":
                self.accept = value
            elif name == b"sec-fetch-mode":
                self.mode = value
            elif name == b"sec-fetch-site":
                self.site = value
            elif name == b"user-agent":
                self.agent = value
            elif name == BYPASS_WARNING_HEADER:
                self.bypass = True


async def check(
    name: str, owner_user_id: int | None, access: Access, scope: Scope, first: Message | None
) -> Scope | Answer:
    """The scope to forward to tunnel `name`'s app, or the Answer that replaces the app's."""
    http = scope["type"] == "http"
    path = scope.get("path") or "/"
    if (
        http
        and access.warning
        and not (access.cidr or access.basic or access.team)
        and not path.startswith(VISITOR_PATH_PREFIX)
    ):
        return _warning_only(name, access, scope)  # the common case: anonymous tunnels
    seen = _Seen(scope["headers"])
    if http and path.startswith(VISITOR_PATH_PREFIX):
        special = _special(name, owner_user_id, access, scope, seen, path, first)
        if special is not None:
            return special
    if access.cidr and not access.admits(client_ip(scope)):
        return _refusal(
            scope,
            403,
            f"The owner of the tunnel {name} does not allow visitors from your address "
            f"({client_ip(scope)}).",
        )
    strip_authorization = False
    if access.basic:
        if len(seen.authorization) != 1 or not access.basic_ok(seen.authorization[0]):
            answer = _refusal(
                scope,
                401,
                f"The tunnel {name} asks for a user name and password (HTTP basic auth).",
            )
            answer.headers.append(
                (b"www-authenticate", f'Basic realm="{name}", charset="UTF-8"'.encode())
            )
            return answer
        strip_authorization = True
    if access.team:
        holder = team.pass_holder(name, owner_user_id, scope)
        bearer = None if holder is not None or access.basic else team.bearer(seen.authorization)
        try:
            if holder is not None:  # still on the owner's team? (cached, rate-limited)
                allowed = await team.holder_allowed(holder, owner_user_id, visitor_key(scope))
            else:
                allowed = bearer is not None and await team.token_allowed(
                    bearer, owner_user_id, visitor_key(scope)
                )
        except team.Busy as busy:
            answer = _refusal(scope, busy.status, busy.message)
            answer.headers.append((b"retry-after", str(busy.retry_after_s).encode()))
            return answer
        if not allowed:
            return _team_refusal(name, scope, seen, access)
        strip_authorization = strip_authorization or bearer is not None
    if (
        http
        and access.warning
        and _shows_warning(scope, seen)
        and not warning.warned(name, access.owner_tag, scope)
    ):
        return _warning_page(name, access, scope)
    if strip_authorization or seen.cookies:
        return _stripped(scope, strip_authorization)
    return scope


# --- the warning page ---------------------------------------------------------------------
def _warning_only(name: str, access: Access, scope: Scope) -> Scope | Answer:
    """A tunnel whose one rule is the warning: a method check, then one scan."""
    if scope["method"] != "GET":
        for header, value in scope["headers"]:
            if header == b"cookie" and has_relay_cookie(value):
                return _stripped(scope, False)
        return scope
    seen = _Seen(scope["headers"])
    if _shows_warning(scope, seen) and not warning.warned(name, access.owner_tag, scope):
        return _warning_page(name, access, scope)
    return _stripped(scope, False) if seen.cookies else scope


def _shows_warning(scope: Scope, seen: _Seen) -> bool:
    return warning.shows(scope["method"], seen.mode, seen.accept, seen.agent, seen.bypass)


def _warning_page(name: str, access: Access, scope: Scope) -> Answer:
    headers, body = warning.warning_page(name, access.owner_label, scope)
    return Answer(200, headers, body, "the tunnel's warning page")


# --- the relay's own paths ----------------------------------------------------------------
def _special(
    name: str,
    owner_user_id: int | None,
    access: Access,
    scope: Scope,
    seen: _Seen,
    path: str,
    first: Message | None,
) -> Answer | None:
    if path == TICKET_PATH and access.team:
        return _exchange_ticket(name, owner_user_id, scope)
    if path == CONTINUE_PATH and access.warning:
        if scope["method"] != "POST":
            return _redirect(_next_of(scope, None), [])
        if seen.site and seen.site not in (b"same-origin", b"none"):
            return _refusal(scope, 403, "Continue only works from the tunnel's warning page.")
        cookie = warning.continue_cookie(name, access.owner_tag, scope)
        return _redirect(_next_of(scope, first), [(b"set-cookie", cookie)])
    return None


def _exchange_ticket(name: str, owner_user_id: int | None, scope: Scope) -> Answer:
    query = dict(parse_qsl((scope.get("query_string") or b"").decode("latin-1"))[:MAX_FORM_FIELDS])
    ticket = passes.verify(
        query.get(TICKET_PARAM, ""), passes.TICKET, name, owner_user_id=owner_user_id
    )
    good = ticket is not None and passes.signed_out.still_in(ticket)
    if ticket is None or not good or not passes.spent_tickets.spend(ticket):
        signin = _signin_url(name, scope, local_path(query.get(NEXT_PARAM, "/")))
        if good and passes.spent_tickets.full:  # a good ticket, but no room to remember it
            STATS.signins_full += 1
            answer = _refusal(
                scope,
                503,
                "This relay has taken in too many sign-ins in the last few minutes to accept "
                f"another now. Wait a minute, then sign in again: {signin}",
            )
            answer.headers.append((b"retry-after", str(int(TICKET_MAX_AGE_S)).encode()))
            return answer
        message = (
            f"This sign-in link for the tunnel {name} is not valid: it was used already, "
            f"expired, or was made for another tunnel (or this name's earlier owner). Go back "
            f"and sign in again: {signin}"
        )
        return _refusal(scope, 403, message)
    cookie = relay_cookie_line(
        ACCESS_COOKIE,
        passes.sign(
            passes.ACCESS,
            name,
            ticket.user_id,
            settings.RELAY_VISITOR_COOKIE_MAX_AGE_S,
            owner_user_id=owner_user_id,
        ),
        settings.RELAY_VISITOR_COOKIE_MAX_AGE_S,
        scope,
    )
    return _redirect(local_path(query.get(NEXT_PARAM, "/")), [(b"set-cookie", cookie)])


def _next_of(scope: Scope, first: Message | None) -> str:
    query = parse_qsl((scope.get("query_string") or b"").decode("latin-1"))
    fields = dict(query[:MAX_FORM_FIELDS])
    if NEXT_PARAM not in fields and first is not None and first.get("body"):
        form = parse_qsl(bytes(first["body"][: MAX_NEXT_CHARS * 2]).decode("latin-1"))
        fields = dict(form[:MAX_FORM_FIELDS])
    return local_path(fields.get(NEXT_PARAM, "/"))


def _redirect(location: str, extra: list[tuple[bytes, bytes]]) -> Answer:
    headers = [
        (b"location", location.encode("ascii")),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        *extra,
    ]
    return Answer(303, headers, b"", "redirected")


# --- team-only ----------------------------------------------------------------------------
def _signin_url(name: str, scope: Scope, target: str) -> str:
    query = urlencode({TUNNEL_PARAM: name, NEXT_PARAM: target})
    return warning.bare_url(scope) + TEAM_SIGNIN_PATH + "?" + query


def _team_refusal(name: str, scope: Scope, seen: _Seen, access: Access) -> Answer:
    if (
        scope["type"] == "http"
        and scope["method"] in ("GET", "HEAD")
        and b"text/html" in seen.accept
        and not wants_json(scope)
    ):
        location = _signin_url(name, scope, local_path(warning.target(scope)))
        headers = [
            (b"location", location.encode("ascii")),
            (b"content-length", b"0"),
            (b"cache-control", b"no-store"),
        ]
        return Answer(302, headers, b"", "sign in first")
    signin = f"{warning.bare_url(scope)}{TEAM_SIGNIN_PATH}?{TUNNEL_PARAM}={quote(name)}"
    if access.basic:  # the one Authorization header carries the password: no Bearer token
        message = (
            f"The tunnel {name} asks for both a password (HTTP basic auth) and its owner's "
            f"team sign-in. A browser can do both: sign in at {signin}, then give the "
            "password when asked. A script cannot: its one Authorization header carries the "
            "password, so it has no room for an API token; ask the tunnel's owner to use one "
            "of the two rules for scripts."
        )
    else:
        message = (
            f"The tunnel {name} is open to its owner's team only. In a browser, sign in at "
            f"{signin}; from a script, send an API token of an allowed user as "
            "'Authorization: Bearer <token>'."
        )
    answer = _refusal(scope, 401, message)
    if not access.basic:
        answer.headers.append((b"www-authenticate", f'Bearer realm="{name}"'.encode()))
    return answer


# --- cookies and headers --------------------------------------------------------------------
def _stripped(scope: Scope, authorization: bool) -> Scope:
    headers: list[tuple[bytes, bytes]] = []
    for header, value in scope["headers"]:
        if header == b"authorization" and authorization:
            continue
        if header == b"cookie":
            value = strip_relay_cookies(value)
            if not value.strip(b" \t;"):
                continue
        headers.append((header, value))
    stripped = dict(scope)
    stripped["headers"] = headers
    return stripped


def _refusal(scope: Scope, status: int, message: str) -> Answer:
    headers, body = error_response(scope, status, message)
    return Answer(status, headers, body, message)
