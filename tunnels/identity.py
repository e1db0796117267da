"""Who is asking: the client's address and the API token it presents, read from a request.

Tokens arrive as `Authorization: Bearer <token>` (our client) or as HTTP Basic (the npm
client given `--host https://TOKEN@relay`: axios turns the URL's user-info into Basic auth
with the token as user name and an empty password). Either half of Basic may carry it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from django.http import HttpRequest

from relay.face import client_ip
from tunnels.auth import anonymous_owner
from tunnels.tokens import TOKEN_MARK


@dataclass(frozen=True)
class Requester:
    ip: str
    owner: str  # the owner key of an anonymous tunnel
    credential: str | None  # the token text as sent; "" when the header is unreadable


def identify(request: HttpRequest) -> Requester:
    scope = getattr(request, "scope", None)
    if scope is not None:
        ip = client_ip(scope)
    else:
        ip = request.META.get("REMOTE_ADDR", "")
    return Requester(ip=ip, owner=anonymous_owner(ip), credential=credential(request))


def credential(request: HttpRequest) -> str | None:
    """The token in the Authorization header; None without one, "" when it is unreadable."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        return value
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        username, _, password = decoded.partition(":")
        if password.startswith(TOKEN_MARK) or not username:
            return password
        return username
    return ""
