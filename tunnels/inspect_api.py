"""The request inspector's JSON (relay.protocol.INSPECT_PATH): the owner's view of a tunnel's
kept exchanges, and replay. SEAM STUB (issue 14)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse


async def list_captures(request: HttpRequest, name: str) -> HttpResponse:
    return JsonResponse({"message": "not yet"}, status=501)


async def capture_detail(request: HttpRequest, name: str, capture_id: int) -> HttpResponse:
    return JsonResponse({"message": "not yet"}, status=501)


async def replay(request: HttpRequest, name: str, capture_id: int) -> HttpResponse:
    return JsonResponse({"message": "not yet"}, status=501)
