"""The request inspector's page on the account pages (`/account/tunnels/<name>/`); its JSON
is tunnels/inspect_api.py. SEAM STUB (issue 14)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def page(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse("inspector")
