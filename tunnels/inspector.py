"""The request inspector's pages and JSON (relay.protocol.INSPECT_PATH). SEAM STUB (issue 14)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse


async def list_captures(request: HttpRequest, name: str) -> HttpResponse:
    return JsonResponse({"message": "not yet"}, status=501)


async def capture_detail(request: HttpRequest, name: str, capture_id: int) -> HttpResponse:
    return JsonResponse({"message": "not yet"}, status=501)


async def replay(request: HttpRequest, name: str, capture_id: int) -> HttpResponse:
    return JsonResponse({"message": "not yet"}, status=501)


def page(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse("inspector")
