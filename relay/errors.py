"""Error answers visitors see: HTML for browsers, JSON for `Accept: application/json`."""

from __future__ import annotations

import json
from html import escape

from relay.asgi_types import Scope, Send
from relay.protocol import ERROR_HEADER

_TITLES = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "No such tunnel",
    413: "Request body too large",
    429: "Too many requests",
    431: "Request headers too large",
    502: "The tunnel answered badly",
    503: "Tunnel unavailable",
    504: "The tunnel did not answer in time",
}

# The one page shell of everything the relay answers in HTML (errors, the warning page):
# light and dark by the visitor's preference, readable on a phone.
_SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title>
<style>
:root{{color-scheme:light dark}}
body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;
color:#1d1d1f;background:#fff}}
h1{{font-size:1.4em}}code{{background:#f2f2f2;padding:0 .2em;word-break:break-all}}
button{{font:inherit;padding:.4em 1.2em;cursor:pointer}}a{{color:#0645ad}}
@media (prefers-color-scheme:dark){{body{{color:#eee;background:#161618}}
code{{background:#2a2a2e}}a{{color:#8ab4f8}}}}
</style></head><body>{body}<p><small>tunnelsite relay</small></p></body></html>
"""


def page(title: str, body_html: str) -> bytes:
    """A relay page: `title` is plain text (escaped here), `body_html` is HTML already."""
    return _SHELL.format(title=escape(title), body=body_html).encode()


def wants_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"application/json" in value and b"text/html" not in value
    return False


def error_response(
    scope: Scope, status: int, message: str, retry_after: int | None = None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    if wants_json(scope):
        body = json.dumps({"message": message}).encode()
        ctype = b"application/json"
    else:
        title = _TITLES.get(status, "Error")
        body = page(
            f"{status} {title}", f"<h1>{status} &middot; {title}</h1><p>{escape(message)}</p>"
        )
        ctype = b"text/html; charset=utf-8"
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (ERROR_HEADER, str(status).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    return headers, body


async def send_error(
    scope: Scope, send: Send, status: int, message: str, retry_after: int | None = None
) -> None:
    headers, body = error_response(scope, status, message, retry_after)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
