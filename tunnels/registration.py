"""Registering a tunnel, wire-compatible with localtunnel: `GET /?new` and `GET /<name>`
(tunnels/views.py routes them here), from the checks before any database work to the
registry's answer, and the error answers tunnel clients understand.

It runs on the relay's event loop, next to the registry.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import split_domain_port

from relay import face, protocol
from relay.face import PlanQuota, RegistrationError, TcpAsk
from tunnels import access, addresses, auth, quiet, refusal_log, tcp_registration
from tunnels.identity import Requester, identify
from tunnels.plans import PlanLimits
from tunnels.route_names import site_route_names

DATABASE_BUSY = "The relay's database is busy or unavailable; try again in a moment."
ENCRYPTED_ONLY = (
    "This relay accepts only encrypted tunnel clients: the localtunnel client's raw pool "
    "connections are turned off here (RELAY_RAW_POOLS=false). Install tunnelsite's lt "
    "(docs/client.md of the relay's project: `pipx install ./client` in its checkout) and "
    "run `lt --port PORT --host <this relay's https URL>`."
)


def client_error(
    request: HttpRequest,
    status: int,
    message: str,
    *,
    reason: str = "",
    retry_after: int | None = None,
    registration: bool = True,
) -> JsonResponse:
    """`{"message"}` with the real status, except for the npm client (axios User-Agent),
    which gets 203: it retries any non-2xx answer silently forever, but exits printing the
    message of a 2xx other than 200 (see protocol.NPM_CLIENT_ERROR_STATUS).
    A refusal (4xx: a bad name, a wrong token, over quota) is the client's mistake and any
    client can repeat it at will: not Django's line each (tunnels/quiet.py) but our bounded
    `registration_refused` event (tunnels/refusal_log.py); a 5xx is logged. Only a
    registration's refusal is that event: the tunnel API's other answers (`registration`
    False: a status poll or a DELETE for a name that is not live) are not logged at all, so a
    client asking about a closed tunnel does not spend the refusal lines' ration.
    """
    answer = JsonResponse({"message": message, "status": status})
    answer.status_code = protocol.error_status_for(user_agent(request), status)
    answer["X-Tunnelsite-Status"] = str(status)
    if reason:
        answer[protocol.REFUSAL_HEADER] = reason
    if retry_after is not None:
        answer["Retry-After"] = str(retry_after)
    if status >= 500:
        return answer  # Django's request logging says it at ERROR
    if registration:
        refusal_log.refused(request, status, message, reason)
    return quiet.unlogged(answer)


def user_agent(request: HttpRequest) -> bytes:
    return request.headers.get("User-Agent", "").encode("latin-1", "replace")


View = Callable[[HttpRequest, str | None], Awaitable[HttpResponse]]


def _counted(view: View) -> View:
    """Count each registration request's outcome for /metrics, once: 200, or the status the
    client is told (X-Tunnelsite-Status: the npm client's answers say 203). A request that
    ends without an answer (its client left, so the view was cancelled; or an error, which
    Django answers 500) counts too, as 500 ("other"): every request counts exactly once. It
    is counted on the node it reached only (a registration is never forwarded between
    nodes, relay/cluster/hop.py; a reclaim from another node closes the tunnel there and
    counts nothing there), and the registry's own retries (a random name taken, a session
    row inserted again while another node releases the name) are within the one request."""

    @functools.wraps(view)
    async def counted(request: HttpRequest, requested: str | None) -> HttpResponse:
        status = 500  # unless an answer comes back
        try:
            answer = await view(request, requested)
            status = int(answer.get("X-Tunnelsite-Status", str(answer.status_code)))
            return answer
        finally:
            face.registration_answered(status)

    return counted


@_counted
async def register(request: HttpRequest, requested: str | None) -> HttpResponse:
    if _from_a_web_page(request):
        return client_error(
            request,
            403,
            "Tunnels are registered by a tunnel client (lt), not by a web page. "
            "Run `lt --port PORT --host <this relay>`.",
        )
    client_id = request.headers.get(protocol.CLIENT_ID_HEADER, "")
    if not protocol.CLIENT_ID_RE.fullmatch(client_id):
        client_id = ""  # not our lt's: treated as a client without an id
    # Only our lt asking for it (protocol.POOL_KIND_HEADER) gets the upgraded pool; a client
    # id alone (an older lt, lt --raw-pool) gets a raw pool port as before.
    upgraded = bool(client_id) and (
        request.headers.get(protocol.POOL_KIND_HEADER, "").strip().lower()
        == protocol.POOL_KIND_UPGRADE
    )
    if not upgraded and not settings.RELAY_RAW_POOLS:
        return client_error(request, 426, ENCRYPTED_ONLY)  # it cannot upgrade its pool
    requester: Requester = identify(request)
    if requested is not None and requested.lower() in site_route_names():
        return client_error(
            request,
            403,
            f"The subdomain {requested!r} is reserved: /{requested} is a page of this relay. "
            "Pick another name, or leave out --subdomain for a random one.",
        )
    if requested is not None and not protocol.is_valid_subdomain(requested):
        return client_error(
            request,
            403,
            f"Invalid subdomain: {protocol.SUBDOMAIN_RULE}.",
        )
    try:  # our lt's visitor rules: a bad header is refused before any database work
        client_rules = access.parse_header(request.headers.get(protocol.ACCESS_HEADER))
    except access.BadRules as exc:
        return client_error(request, 400, exc.message)
    tcp_wanted: tcp_registration.Ask | None = None
    if tcp_registration.wants_tcp(request):  # `lt tcp`: its refusals need no database either
        try:
            tcp_wanted = tcp_registration.read_ask(
                request, client_rules, anonymous=requester.credential is None
            )
        except auth.Refusal as exc:
            return client_error(request, exc.status, exc.message, reason=exc.reason)
    # An operator's Disconnect or Suspend, from memory before any database work (anonymous
    # clients, the npm client's loop); a token's owner is known after it (the registry).
    if requester.credential is None and (refusal := face.refusal_for(requested, "")):
        return client_error(
            request,
            refusal.status,
            refusal.message,
            reason=refusal.reason,
            retry_after=refusal.retry_after,
        )
    if requester.credential is None and (refused := _over_rate(request, requester.owner)):
        return refused  # anonymous: refused before any database work
    # A token is checked in the database: an address whose attempts were refused too often
    # (a wrong or guessed token, in a loop) is stopped before that work (review L3). Only
    # refusals spend this bucket, so a correct client never does.
    refusals = _REFUSALS + requester.owner
    if requester.credential is not None and (waited := face.registration_wait(refusals)):
        return client_error(
            request,
            429,
            "Too many refused registrations (wrong or unreadable token) from your address; "
            f"check the token you pass to lt and try again in {waited} s.",
            retry_after=waited,
        )
    tcp: TcpAsk | None = None
    try:
        if tcp_wanted is None:
            grant = await face.database_call(
                auth.grant_registration, requester.credential, requester.ip, requested
            )
        else:
            grant, tcp = await face.database_call(
                tcp_registration.grant_registration,
                requester.credential,
                requester.ip,
                requested,
                tcp_wanted,
            )
    except auth.Refusal as exc:
        # Only a token that does not check out spends the address's bucket: a refusal of a
        # good token (a suspended or reserved name, a plan's rule) says nothing of guessing,
        # and counting it locked every token user behind the same address out.
        if requester.credential is not None and exc.status == 401:
            face.take_registration(refusals)
        return client_error(request, exc.status, exc.message, reason=exc.reason)
    except OperationalError:  # locked (SQLite) or unreachable: live tunnels carry on
        return client_error(request, 503, DATABASE_BUSY)
    if requester.credential is not None and (refused := _over_rate(request, grant.owner)):
        return refused
    try:
        rules = access.visitor_rules(
            client_rules,
            anonymous=grant.anonymous,
            owner_label=grant.username,
            plan=grant.plan_policy,
            reserved=grant.name_policy,
            interstitial=settings.RELAY_INTERSTITIAL,
        )
    except access.BadRules as exc:
        return client_error(request, 403, exc.message)
    if tcp is not None:
        rules = tcp_registration.visitor_rules(rules)
    # No await between this count and register() claiming the name: nothing can slip in.
    # Tunnels whose client is gone (waiting out their grace period) give way.
    limit = grant.limits.max_live_tunnels
    if limit and not _is_reclaim(requested, grant.owner):
        if not face.release_for_owner(grant.owner, limit):
            return client_error(
                request,
                429,
                f"You already have {limit} live tunnel{'s' if limit != 1 else ''}, the most "
                f"your plan ({grant.limits.plan}) allows. Close one (stop its client) first.",
            )
    try:
        registered = await face.register(
            requested,
            owner=grant.owner,
            client_ip=requester.ip,
            max_sockets=grant.limits.max_sockets,
            user_id=grant.user_id,
            token_id=grant.token_id,
            live_limit=limit,
            client_id=client_id,
            takeover=request.GET.get(protocol.TAKEOVER_PARAM, "") in ("1", "true", "yes"),
            reserved=site_route_names(),
            quota=_quota(grant.limits),
            raw_pool=not upgraded,  # our lt upgrades its pool connections on this port
            pool_secret=request.headers.get(protocol.POOL_SECRET_HEADER, "") if upgraded else "",
            rules=rules,
            inspect=grant.limits.inspect and tcp is None,  # a TCP tunnel has no requests
            tcp=tcp,
            plan=grant.limits.plan,  # /metrics' label
        )
    except RegistrationError as exc:
        return client_error(
            request, exc.status, exc.message, reason=exc.reason, retry_after=exc.retry_after
        )
    public_port = addresses.public_port(request)
    url = (
        addresses.tcp_url(registered.tcp_port)
        if tcp is not None
        else addresses.tunnel_url(registered.name, public_port)
    )
    answer = JsonResponse(
        protocol.registration_answer(
            registered.name,
            registered.port,
            registered.max_sockets,
            url,
            registered.advertise_host,
            pool_base=(registered.node_url or _own_base(request, public_port)) if upgraded else "",
            pool_secret=registered.pool_secret if upgraded else "",
            tcp_port=registered.tcp_port if tcp is not None else 0,
        )
        | ({"limits": _limits(grant.limits)} if upgraded else {})  # our lt only
    )
    if upgraded:  # it carries the pool secret: no cache (a proxy's, the client's) keeps it
        answer["Cache-Control"] = "no-store"
    return answer


def _limits(limits: PlanLimits) -> dict[str, object]:
    """The account's limits, for our lt to show when the tunnel opens (docs/quotas.md)."""
    return {
        "plan": limits.plan,
        "requests_per_minute": limits.max_requests_per_minute,
        "bytes_per_day": limits.max_bytes_per_day,
        "live_tunnels": limits.max_live_tunnels,
        # The plan's bandwidth, each direction (docs/quotas.md); lt treats the key as optional
        # (an older relay does not send it).
        "bytes_per_second": limits.max_bytes_per_second,
    }


def _own_base(request: HttpRequest, public_port: int) -> str:
    """The relay's base URL as this client reached it (the host it asked for, through a
    proxy in front the Host that proxy forwards; the public port as in the tunnel's URL):
    our lt opens its pool connections there."""
    scheme = "https" if request.is_secure() else settings.RELAY_PUBLIC_SCHEME
    host, _ = split_domain_port(request.get_host())  # an IPv6 literal keeps its brackets
    return protocol.relay_url(scheme, host, public_port)


# The registration bucket of an address's refused token attempts (apart from its
# anonymous registrations, which "ip:<address>" counts).
_REFUSALS = "refused:"


def _over_rate(request: HttpRequest, owner: str) -> JsonResponse | None:
    """429 + Retry-After when the owner registers faster than RELAY_REGISTRATION_BURST then
    RELAY_REGISTRATIONS_PER_MINUTE; else None, one registration spent."""
    retry = face.take_registration(owner)
    if not retry:
        return None
    return client_error(
        request,
        429,
        f"Too many tunnel registrations from you in a short time; try again in {retry} s.",
        retry_after=retry,
    )


def _quota(limits: PlanLimits) -> PlanQuota:
    return PlanQuota(
        per_minute=limits.max_requests_per_minute,
        per_day_bytes=limits.max_bytes_per_day,
        max_body_bytes=limits.max_request_body_bytes,
        idle_timeout_s=limits.idle_timeout_s,
        plan=limits.plan,
        max_bytes_per_second=limits.max_bytes_per_second,
    )


def _is_reclaim(requested: str | None, owner: str) -> bool:
    existing = face.tunnel_status(requested) if requested is not None else None
    return existing is not None and existing.owner == owner


def _from_a_web_page(request: HttpRequest) -> bool:
    """A browser fetching on behalf of another page: registration is a GET, so without this
    any page a developer visits could re-register their name from their own address (which
    owns it) and cut their tunnel's sockets, or use up their quota. Tunnel clients send
    neither header; a URL typed into the address bar says `Sec-Fetch-Site: none`."""
    site = request.headers.get("Sec-Fetch-Site")
    return (site is not None and site != "none") or "Origin" in request.headers
