"""Who is asking: the identity a tunnel belongs to (an IP now, a token once tokens exist)."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from relay.headers import client_ip


@dataclass(frozen=True)
class Requester:
    ip: str
    owner: str


def identify(request: HttpRequest) -> Requester:
    scope = getattr(request, "scope", None)
    if scope is not None:
        ip = client_ip(scope)
    else:
        ip = request.META.get("REMOTE_ADDR", "")
    return Requester(ip=ip, owner=f"ip:{ip}")
