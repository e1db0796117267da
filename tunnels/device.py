"""`lt login` in the browser: device authorization (RFC 8628). SEAM STUB (issue 14)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse


def code(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"message": "not yet"}, status=501)


def token(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"message": "not yet"}, status=501)


def verify(request: HttpRequest) -> HttpResponse:
    return HttpResponse("device")
