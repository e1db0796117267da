"""The registration API, wire-compatible with localtunnel, and the landing page.

These are async views: they run on the relay's event loop, next to the registry.
"""

from __future__ import annotations

import resource

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from relay import protocol
from relay.registry import RegistrationError, get_registry
from tunnels.identity import Requester, identify


def _error(request: HttpRequest, status: int, message: str) -> JsonResponse:
    user_agent = request.headers.get("User-Agent", "").encode("latin-1", "replace")
    answer = JsonResponse({"message": message, "status": status})
    answer.status_code = protocol.error_status_for(user_agent, status)
    answer["X-Tunnelsite-Status"] = str(status)
    return answer


async def _register(request: HttpRequest, requested: str | None) -> HttpResponse:
    requester: Requester = identify(request)
    if requested is not None and not protocol.is_valid_subdomain(requested):
        return _error(
            request,
            403,
            "Invalid subdomain. Subdomains must be lowercase and between 4 and 63 "
            "alphanumeric characters (inner hyphens allowed).",
        )
    try:
        tunnel = await get_registry().register(
            requested,
            owner=requester.owner,
            client_ip=requester.ip,
            max_conn_count=settings.RELAY_MAX_SOCKETS,
        )
    except RegistrationError as exc:
        return _error(request, exc.status, exc.message)
    public_port = settings.RELAY_PUBLIC_PORT or request.get_port()
    url = protocol.public_url(
        settings.RELAY_PUBLIC_SCHEME, tunnel.name, settings.RELAY_DOMAIN, int(public_port)
    )
    return JsonResponse(
        protocol.registration_answer(tunnel.name, tunnel.port, tunnel.max_conn_count, url)
    )


@require_GET
async def index(request: HttpRequest) -> HttpResponse:
    if "new" in request.GET:
        return await _register(request, None)
    registry = get_registry()
    return render(
        request,
        "tunnels/landing.html",
        {
            "domain": settings.RELAY_DOMAIN,
            "host": request.get_host(),
            "live": len(registry.tunnels),
        },
    )


@require_GET
async def register_named(request: HttpRequest, name: str) -> HttpResponse:
    return await _register(request, name)


@require_GET
async def relay_status(request: HttpRequest) -> JsonResponse:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return JsonResponse({**get_registry().status(), "mem": {"max_rss_kb": usage.ru_maxrss}})


@csrf_exempt
async def tunnel_detail(request: HttpRequest, name: str) -> HttpResponse:
    tunnel = get_registry().get(name)
    if request.method == "DELETE":
        if tunnel is None:
            return _error(request, 404, f"There is no live tunnel called {name!r}.")
        if identify(request).owner != tunnel.owner:
            return _error(request, 403, "Only the client that opened this tunnel may close it.")
        get_registry().close(tunnel, "closed by client")
        return HttpResponse(status=204)
    return _error(request, 405, "Use DELETE to close a tunnel.")


@require_GET
async def tunnel_status(request: HttpRequest, name: str) -> JsonResponse:
    tunnel = get_registry().get(name)
    if tunnel is None:
        return _error(request, 404, f"There is no live tunnel called {name!r}.")
    return JsonResponse({"connected_sockets": tunnel.connected_sockets})
