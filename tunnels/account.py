"""The account page of every user (`/account/`): live tunnels, traffic, API tokens, reserved
names, plan and usage. SEAM STUB (issue 14)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse


@login_required
def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("account")


@login_required
def data(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


@login_required
def create_token(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=501)


@login_required
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(status=501)


@login_required
def reserve_name(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=501)


@login_required
def release_name(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(status=501)
