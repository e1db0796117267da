"""The warning page of a tunnel (RELAY_INTERSTITIAL, a plan's flag): on a browser's first
top-level navigation, a page that says whose tunnel this is and that it is not the relay
operator's site, with Continue (a signed "warned" cookie for this tunnel host) and Report abuse
(the bare domain's form). relay/proxy/gate.py decides when; this module says what.

Never shown to anything but a browser's top-level GET navigation: not to other methods, CORS
preflights, WebSockets, non-browser user agents, nor requests carrying
`bypass-tunnel-reminder` (as loca.lt, so existing scripts keep working)."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from django.conf import settings

from relay import visitor_pass as passes
from relay.asgi_types import Scope
from relay.errors import page
from relay.headers import relay_cookie, relay_cookie_line
from relay.protocol import (
    ABUSE_REPORT_PATH,
    CONTINUE_PATH,
    NEXT_PARAM,
    TUNNEL_PARAM,
    WARNED_COOKIE,
    local_path,
    relay_url,
)


def shows(method: str, mode: bytes, accept: bytes, agent: bytes, bypass: bool) -> bool:
    """Is this request a browser's top-level navigation that may see the warning?"""
    return (
        method == "GET"
        and mode == b"navigate"
        and b"text/html" in accept
        and agent.startswith(b"Mozilla/")
        and not bypass
    )


def warned(name: str, owner_tag: int, scope: Scope) -> bool:
    """Did this visitor press Continue on tunnel `name` while this owner held it (a current
    signed cookie; Access.owner_tag)?"""
    value = relay_cookie(scope, WARNED_COOKIE)
    return (
        value is not None
        and passes.verify(value, passes.WARNED, name, owner_user_id=owner_tag) is not None
    )


def continue_cookie(name: str, owner_tag: int, scope: Scope) -> bytes:
    """Continue's Set-Cookie: the signed "warned" cookie for this tunnel host and owner."""
    max_age = settings.RELAY_WARNED_COOKIE_MAX_AGE_S
    value = passes.sign(passes.WARNED, name, 0, max_age, owner_user_id=owner_tag)
    return relay_cookie_line(WARNED_COOKIE, value, max_age, scope)


def bare_url(scope: Scope) -> str:
    """The relay's bare domain as visitors reach it."""
    server = scope.get("server") or ("", 0)
    port = settings.RELAY_PUBLIC_PORT or (server[1] if server else 0) or 0
    return relay_url(settings.RELAY_PUBLIC_SCHEME, settings.RELAY_DOMAIN, int(port))


def target(scope: Scope) -> str:
    """The request's path and query as the visitor sent them."""
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


def warning_page(
    name: str, owner_label: str, scope: Scope
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The page's headers and body for tunnel `name` run by `owner_label` ("": anonymous)."""
    owner = owner_label or "an anonymous user"
    port = int(settings.RELAY_PUBLIC_PORT or (scope.get("server") or ("", 0))[1] or 0)
    here = target(scope)
    url = relay_url(settings.RELAY_PUBLIC_SCHEME, f"{name}.{settings.RELAY_DOMAIN}", port) + here
    report = bare_url(scope) + ABUSE_REPORT_PATH + "?" + urlencode({TUNNEL_PARAM: name, "url": url})
    back = local_path(here)
    action = CONTINUE_PATH + "?" + urlencode({NEXT_PARAM: back})
    body = (
        f"<h1>You are about to visit {escape(name)}</h1>"
        f"<p>This page is served through a tunnel run by <strong>{escape(owner)}</strong> "
        f"from their own computer. It is <strong>not</strong> a site of the operator of "
        f"this relay, who does not know or check what it serves.</p>"
        f"<p>Address: <code>{escape(url)}</code></p>"
        f"<p>Do not enter passwords or payment details unless you know and trust who runs "
        f"it.</p>"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="{NEXT_PARAM}" value="{escape(back)}">'
        f'<button type="submit" id="continue">Continue</button></form>'
        f'<p><a id="report" href="{escape(report)}">Report abuse</a></p>'
    )
    content = page(f"Tunnel {name}", body)
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(content)).encode()),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
    ]
    return headers, content
