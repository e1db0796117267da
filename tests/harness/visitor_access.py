"""What a visitor of a tunnel with rules sends and checks, for the end-to-end tests of visitor
access (tests/e2e/test_visitor_access.py, tests/cluster/test_visitor_access_cluster.py): basic
and Bearer credentials, the team-only sign-in on a relay's bare domain as a browser does it
(CSRF form, session cookie, /visit/, the ticket's exchange on the tunnel host), what a browser
sends (the warning page), a WebSocket handshake's status, and what the local app's /headers
echo received."""

from __future__ import annotations

import base64
import re
import socket
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from harness import log_capture
from harness.http import Answer
from harness.relay import Relay
from harness.waiting import IO_TIMEOUT_S
from relay import protocol

# A top-level navigation, as Chromium sends it.
BROWSER = [
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Site", "none"),
]


def upgrade_status(relay: Relay, name: str, headers: list[tuple[str, str]] = ()) -> int:
    """The status a WebSocket handshake to tunnel `name`'s /ws gets (101: upgraded)."""
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {relay.host(name)}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{n}: {v}" for n, v in headers),
    ]
    with socket.create_connection(("127.0.0.1", relay.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


# Every user the visitor tests create has this password (sign_in uses it).
PASSWORD = "pw-for-e2e-only"


def basic(pair: str) -> tuple[str, str]:
    user, _, password = pair.partition(":")
    log_capture.remember_basic(user, password)
    return ("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())


def bearer(token: str) -> tuple[str, str]:
    log_capture.remember(token, "a Bearer token a visitor sent")
    return ("Authorization", f"Bearer {token}")


def cookies_of(answer: Answer) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in answer.headers:
        if name == "set-cookie":
            jar.load(value)
    return {key: morsel.value for key, morsel in jar.items()}


def received(answer: Answer) -> dict[str, list[str]]:
    """The headers the local app received (its /headers echo), by lower-case name."""
    assert answer.status == 200, answer
    seen: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def assert_clean(seen: dict[str, list[str]]) -> None:
    """Nothing of the relay's own credentials reached the app."""
    assert "authorization" not in seen, seen
    for cookie in seen.get("cookie", []):
        assert protocol.ACCESS_COOKIE not in cookie and protocol.WARNED_COOKIE not in cookie


def sign_in(relay: Relay, username: str) -> str:
    """Sign in on the relay's bare domain as a browser would; the Cookie header after it."""
    log_capture.remember(PASSWORD, "the visitor tests' users' password")
    form = relay.get("/accounts/login/")
    assert form.status == 200, form
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert csrf is not None
    jar = cookies_of(form)
    body = urlencode(
        {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf.group(1)}
    ).encode()
    done = relay.request(
        "POST",
        "/accounts/login/",
        headers=[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", f"csrftoken={jar['csrftoken']}"),
        ],
        body=body,
    )
    assert done.status == 302, done
    jar.update(cookies_of(done))
    for key in ("sessionid", "csrftoken"):
        if key in jar:
            log_capture.remember(jar[key], f"a signed-in visitor's {key} cookie")
    return "; ".join(f"{key}={value}" for key, value in jar.items())


def team_pass(relay: Relay, name: str, session: str) -> tuple[Answer, str | None]:
    """The bare domain's /visit/ for `name` with a signed-in `session`; when it sends the
    browser back with a ticket, the tunnel host's exchange of it: (answer, access cookie)."""
    query = urlencode({"tunnel": name, "next": "/headers"})
    visit = relay.get(f"{protocol.TEAM_SIGNIN_PATH}?{query}", headers=[("Cookie", session)])
    if visit.status != 302:
        return visit, None
    back = urlsplit(visit.header("location") or "")
    for ticket in parse_qs(back.query).get(protocol.TICKET_PARAM, []):
        log_capture.remember(ticket, f"a visitor ticket for {name!r}")
    assert back.hostname == f"{name}.localhost" and back.path == protocol.TICKET_PATH
    exchanged = relay.get(f"{back.path}?{back.query}", name=name, headers=BROWSER)
    assert exchanged.status == 303, exchanged
    value = cookies_of(exchanged).get(protocol.ACCESS_COOKIE)
    if value:
        log_capture.remember(value, f"the access cookie of a visitor of {name!r}")
    return exchanged, f"{protocol.ACCESS_COOKIE}={value}"


def sign_out(relay: Relay, session: str) -> None:
    """The bare domain's Sign out (a POST with the session's CSRF token), as a browser does."""
    jar: SimpleCookie = SimpleCookie()
    jar.load(session)
    body = urlencode({"csrfmiddlewaretoken": jar["csrftoken"].value}).encode()
    done = relay.request(
        "POST",
        "/accounts/logout/",
        headers=[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", session)],
        body=body,
    )
    assert done.status == 200, done
