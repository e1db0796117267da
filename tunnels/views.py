"""The site's views: the landing page, the registration routes (tunnels/registration.py does
the work), health and status, and a client's own tunnel (close it, ask its status).

These are async views: they run on the relay's event loop, next to the registry.
"""

from __future__ import annotations

import inspect
import resource
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_safe

from relay import face, protocol
from tunnels import addresses, auth
from tunnels.identity import identify
from tunnels.registration import client_error, register, user_agent


def guard_bare_routes(patterns: list[Any]) -> list[Any]:
    """Wrap every route at `/<one segment>` with site_route: it shadows the registration
    `GET /<name>`, so tunnel clients must get the refusal there, not the route. Applied to
    the URLconf as a whole, so a route added later is guarded without anyone remembering."""
    for pattern in patterns:
        route = getattr(pattern.pattern, "_route", None)
        if isinstance(pattern, URLPattern) and route and "/" not in route and "<" not in route:
            pattern.callback = site_route(str(route), pattern.callback)
    return patterns


@require_GET
async def index(request: HttpRequest) -> HttpResponse:
    if "new" in request.GET:
        return await register(request, None)
    port = addresses.public_port(request)  # as in registration answers
    return render(
        request,
        "tunnels/landing.html",
        {
            "tunnel_url": addresses.tunnel_url("<name>", port),
            "relay_url": addresses.relay_url(request),
            "live": face.live_count(),
            "signup_open": settings.ACCOUNT_SIGNUP_OPEN,
        },
    )


async def no_favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    """The relay's health for a load balancer or a supervisor (a cluster node answers it
    in relay/cluster/hop.py before Django): 503 while it drains."""
    if not face.accepting():
        return JsonResponse({"status": "draining"}, status=503)
    return JsonResponse({"status": "ok", "tunnels": face.live_count()})


def site_route(name: str, view: Callable[..., Any]) -> Callable[..., Any]:
    """A route of the bare domain at `/<name>`, the path localtunnel registers `name` on:
    tunnel clients (npm, our lt) get the reserved-name refusal, everyone else the route.
    Without it `lt --subdomain admin` followed the admin's redirect for ever."""

    async def route(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "GET" and protocol.is_tunnel_client(user_agent(request)):
            return await register(request, name)
        answer = view(request, *args, **kwargs)
        return await answer if inspect.isawaitable(answer) else answer

    # A view exempt from CSRF stays so (/metrics answers POST with its own 405).
    route.csrf_exempt = getattr(view, "csrf_exempt", False)  # type: ignore[attr-defined]
    return route


@require_GET
async def register_named(request: HttpRequest, name: str) -> HttpResponse:
    return await register(request, name)


@require_GET
async def relay_status(request: HttpRequest) -> JsonResponse:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return JsonResponse({**face.relay_status(), "mem": {"max_rss_kb": usage.ru_maxrss}})


@csrf_exempt
async def tunnel_detail(request: HttpRequest, name: str) -> HttpResponse:
    tunnel = face.tunnel_status(name)
    if request.method == "DELETE":
        if tunnel is None:
            return client_error(
                request, 404, f"There is no live tunnel called {name!r}.", registration=False
            )
        requester = identify(request)
        owner = requester.owner
        if requester.credential is not None:
            try:
                grant = await face.database_call(
                    auth.authenticate, requester.credential, requester.ip, touch=False
                )
            except auth.Refusal as exc:
                return client_error(request, exc.status, exc.message, registration=False)
            owner = grant.owner
        client_id = request.headers.get(protocol.CLIENT_ID_HEADER, "")
        if not protocol.CLIENT_ID_RE.fullmatch(client_id):
            client_id = ""  # not our lt's: any client of the owner may close it
        closing = face.close_for_client(tunnel, owner, client_id, "closed by client")
        if closing is face.Closing.NOT_THE_OWNER:
            return client_error(
                request,
                403,
                "Only the client that opened this tunnel may close it: send the same API "
                "token (or any token of the same user), or stop the client.",
                registration=False,
            )
        if closing is face.Closing.ANOTHER_CLIENT:
            return client_error(
                request,
                409,
                f"The tunnel {name!r} is held by another client of yours now (it took the "
                "name over, or reclaimed it); it was left open.",
                registration=False,
            )
        return HttpResponse(status=204)
    return client_error(request, 405, "Use DELETE to close a tunnel.", registration=False)


@require_GET
async def tunnel_status(request: HttpRequest, name: str) -> JsonResponse:
    tunnel = face.tunnel_status(name)
    if tunnel is None:
        return client_error(
            request, 404, f"There is no live tunnel called {name!r}.", registration=False
        )
    answer: dict[str, object] = {"connected_sockets": tunnel.connected_sockets}
    if tunnel.limit_reached:  # what its visitors are told already (our lt polls it)
        answer["limit_reached"] = tunnel.limit_reached
    if settings.RELAY_NODE_NAME:  # scale-out: which node answered (any node forwards here)
        answer["node"] = settings.RELAY_NODE_NAME
    return JsonResponse(answer)
