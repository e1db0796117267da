"""Error answers visitors see: HTML for browsers, JSON for `Accept: application/json`."""

from __future__ import annotations

import json
from html import escape

from relay.asgi_types import Scope, Send
from relay.protocol import ERROR_HEADER

_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "No such tunnel",
    413: "Request body too large",
    429: "Too many requests",
    431: "Request headers too large",
    502: "The tunnel answered badly",
    503: "Tunnel unavailable",
    504: "The tunnel did not answer in time",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}}
h1{{font-size:1.4em}}code{{background:#f2f2f2;padding:0 .2em}}</style></head>
<body><h1>{status} &middot; {title}</h1><p>{message}</p>
<p><small>tunnelsite relay</small></p></body></html>
"""


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
        body = _PAGE.format(status=status, title=title, message=escape(message)).encode()
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
