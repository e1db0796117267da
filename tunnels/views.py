"""The registration API, wire-compatible with localtunnel, and the landing page.

These are async views: they run on the relay's event loop, next to the registry.
"""

from __future__ import annotations

import resource

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from relay import protocol
from relay.limits import Quota
from relay.registry import RegistrationError, Registry, get_registry
from tunnels import auth
from tunnels.identity import Requester, identify
from tunnels.quotas import Limits

DATABASE_BUSY = "The relay's database is busy or unavailable; try again in a moment."


def _error(request: HttpRequest, status: int, message: str) -> JsonResponse:
    """`{"message"}` with the real status, except for the npm client (axios User-Agent),
    which gets 203: it retries any non-2xx answer silently forever, but exits printing the
    message of a 2xx other than 200 (see protocol.NPM_CLIENT_ERROR_STATUS).
    """
    user_agent = request.headers.get("User-Agent", "").encode("latin-1", "replace")
    answer = JsonResponse({"message": message, "status": status})
    answer.status_code = protocol.error_status_for(user_agent, status)
    answer["X-Tunnelsite-Status"] = str(status)
    return answer


async def _register(request: HttpRequest, requested: str | None) -> HttpResponse:
    if _from_a_web_page(request):
        return _error(
            request,
            403,
            "Tunnels are registered by a tunnel client (lt), not by a web page. "
            "Run `lt --port PORT --host <this relay>`.",
        )
    requester: Requester = identify(request)
    if requested is not None and not protocol.is_valid_subdomain(requested):
        return _error(
            request,
            403,
            "Invalid subdomain. Subdomains must be lowercase and between 4 and 63 "
            "alphanumeric characters (inner hyphens allowed).",
        )
    try:
        grant = await database_sync_to_async(auth.grant_registration)(
            requester.credential, requester.ip, requested
        )
    except auth.Refusal as exc:
        return _error(request, exc.status, exc.message)
    except OperationalError:  # locked (SQLite) or unreachable: live tunnels carry on
        return _error(request, 503, DATABASE_BUSY)
    registry = get_registry()
    # No await between this count and register() claiming the name: nothing can slip in.
    limit = grant.limits.max_live_tunnels
    if limit and not _is_reclaim(registry, requested, grant.owner):
        if _live_count(registry, grant.owner) >= limit:
            return _error(
                request,
                429,
                f"You already have {limit} live tunnel{'s' if limit != 1 else ''}, the most "
                f"your plan ({grant.limits.plan}) allows. Close one (stop its client) first.",
            )
    try:
        tunnel = await registry.register(
            requested,
            owner=grant.owner,
            client_ip=requester.ip,
            max_conn_count=grant.limits.max_sockets,
            user_id=grant.user_id,
            token_id=grant.token_id,
            max_live=limit if registry.cluster is not None else 0,  # scale-out
        )
    except RegistrationError as exc:
        return _error(request, exc.status, exc.message)
    if tunnel.quota is None:  # a reclaimed tunnel keeps its quota and counters
        tunnel.quota = _quota(grant.limits)
        if tunnel.quota is not None:
            tunnel.quota.start_idle_timer(tunnel)
    public_port = settings.RELAY_PUBLIC_PORT or request.get_port()
    url = protocol.public_url(
        settings.RELAY_PUBLIC_SCHEME, tunnel.name, settings.RELAY_DOMAIN, int(public_port)
    )
    ip = registry.cluster.advertise_host if registry.cluster is not None else None  # scale-out
    return JsonResponse(
        protocol.registration_answer(tunnel.name, tunnel.port, tunnel.max_conn_count, url, ip)
    )


def _quota(limits: Limits) -> Quota | None:
    quota = Quota(
        per_minute=limits.max_requests_per_minute,
        per_day_bytes=limits.max_bytes_per_day,
        max_body_bytes=limits.max_request_body_bytes,
        idle_timeout_s=limits.idle_timeout_s,
    )
    return None if quota.empty else quota


def _is_reclaim(registry: Registry, requested: str | None, owner: str) -> bool:
    existing = registry.get(requested) if requested is not None else None
    return existing is not None and existing.owner == owner


def _live_count(registry: Registry, owner: str) -> int:
    return sum(1 for tunnel in registry.tunnels.values() if tunnel.owner == owner)


def _from_a_web_page(request: HttpRequest) -> bool:
    """A browser fetching on behalf of another page: registration is a GET, so without this
    any page a developer visits could re-register their name from their own address (which
    owns it) and cut their tunnel's sockets, or use up their quota. Tunnel clients send
    neither header; a URL typed into the address bar says `Sec-Fetch-Site: none`."""
    site = request.headers.get("Sec-Fetch-Site")
    return (site is not None and site != "none") or "Origin" in request.headers


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


async def no_favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


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
        requester = identify(request)
        owner = requester.owner
        if requester.credential is not None:
            try:
                grant = await database_sync_to_async(auth.authenticate)(
                    requester.credential, requester.ip, touch=False
                )
            except auth.Refusal as exc:
                return _error(request, exc.status, exc.message)
            owner = grant.owner
        if owner != tunnel.owner:
            return _error(
                request,
                403,
                "Only the client that opened this tunnel may close it: send the same API "
                "token (or any token of the same user), or stop the client.",
            )
        get_registry().close(tunnel, "closed by client")
        return HttpResponse(status=204)
    return _error(request, 405, "Use DELETE to close a tunnel.")


@require_GET
async def tunnel_status(request: HttpRequest, name: str) -> JsonResponse:
    tunnel = get_registry().get(name)
    if tunnel is None:
        return _error(request, 404, f"There is no live tunnel called {name!r}.")
    answer: dict[str, object] = {"connected_sockets": tunnel.connected_sockets}
    if settings.RELAY_NODE_NAME:  # scale-out: which node answered (any node forwards here)
        answer["node"] = settings.RELAY_NODE_NAME
    return JsonResponse(answer)
