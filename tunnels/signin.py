"""The team-only tunnel's sign-in on the bare domain (docs/security.md, "Team-only tunnels:
signing in"): the relay sends a visitor without a pass to /visit/?tunnel=<name>&next=<path>;
signed in (here, with a Django account) and on the owner's team (tunnels/team.py), the visitor
goes back to the tunnel's host with a one-time ticket the relay exchanges for its pass.
Signing out here tells every relay to end the user's passes (face.signout_message).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import user_logged_out
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.views import LoginView, LogoutView, redirect_to_login
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render

from relay import face, protocol
from tunnels import addresses, team, throttle
from tunnels.identity import identify
from tunnels.models import TunnelSession

logger = logging.getLogger(__name__)


def limit_failed_signins(
    view: Callable[..., HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """The one limit on guessing passwords, around every sign-in form (the relay's and the
    admin's, tunnelsite/urls.py): an address with throttle.SIGNIN.limit failed sign-ins in
    the window gets the 429 page before its password is checked; a successful sign-in
    spends nothing."""

    @functools.wraps(view)
    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        who = throttle.by_address(identify(request).ip)
        if waited := throttle.wait_s(throttle.SIGNIN, who):
            return too_many(request, waited, "sign-in attempts")
        answer = view(request, *args, **kwargs)
        # A sign-in that worked redirects; a failed one shows the form again (200), also to
        # a visitor already signed in as someone else (request.user says nothing here).
        # 403 is CSRF's refusal: no password was tried.
        if answer.status_code not in (302, 303, 403):
            throttle.spend(throttle.SIGNIN, who)
        return answer

    return limited


class SignIn(LoginView):
    """Django's sign-in with the relay's page; the sign-in limit wraps it (urls.py). Reached
    from /visit/, it says which tunnel the sign-in is for."""

    template_name = "tunnels/visitors/signin.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "tunnel": tunnel_of(self.request)}


def tunnel_of(request: HttpRequest) -> str:
    """The team-only tunnel a visitor was sent from (`next` is its /visit/ link), so the
    sign-in page can say what it is for; "" when it names none."""
    target = urlsplit(request.POST.get("next") or request.GET.get("next") or "")
    if target.scheme or target.netloc or target.path != protocol.TEAM_SIGNIN_PATH:
        return ""
    name = parse_qs(target.query).get(protocol.TUNNEL_PARAM, [""])[0].strip().lower()
    return name if protocol.is_valid_subdomain(name) else ""


class SignOut(LogoutView):
    """POST only (Django's rule): ends the session, and the user's tunnel passes (below)."""

    template_name = "tunnels/visitors/signed_out.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "pass_max_age_s": _pass_max_age_s()}


@receiver(user_logged_out)
def end_passes(sender: object, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Every relay refuses the passes this user was given before now (the bare domain's and
    the admin's sign-out alike). With the in-memory channel layer only this process hears
    it; a restarted relay honours an older pass until it expires
    (RELAY_VISITOR_COOKIE_MAX_AGE_S)."""
    layer = get_channel_layer()
    if user is None or layer is None:
        return
    message = face.signout_message(user.pk)
    try:
        async_to_sync(layer.group_send)(face.CONTROL_GROUP, message)
    except Exception as exc:  # the layer (Redis) unreachable: the sign-out itself goes on
        logger.warning(
            "could not tell the relays that user %s signed out (%s): their tunnel passes end "
            "when they expire (RELAY_VISITOR_COOKIE_MAX_AGE_S)",
            user.pk,
            type(exc).__name__,
        )


def too_many(
    request: HttpRequest, waited: int, what: str, who: str = "your address"
) -> HttpResponse:
    answer = render(
        request,
        "tunnels/visitors/too_many.html",
        {"waited": waited, "what": what, "who": who},
        status=429,
    )
    answer["Retry-After"] = str(waited)
    return answer


@dataclass(frozen=True)
class Decision:
    live: bool
    allowed: bool = False
    owner_id: int | None = None  # the live tunnel's owner: the ticket is bound to them


def decide(user: AbstractBaseUser, name: str) -> Decision:
    """Whether `user` may visit the live tunnel `name` (its TunnelSession row: every node of
    a cluster sees it). An anonymous tunnel: staff only."""
    row = (
        TunnelSession.objects.filter(subdomain=name, is_live=True)
        .order_by("-opened_at")
        .values("owner_id")
        .first()
    )
    if row is None:
        return Decision(live=False)
    owner_id = row["owner_id"]
    # One rule with the relay's re-check of a pass (Records.team_user): an anonymous
    # tunnel's team (owner 0) is staff alone, and a suspended user is on no team.
    return Decision(live=True, allowed=team.may_visit(user, owner_id or 0), owner_id=owner_id)


async def visit(request: HttpRequest) -> HttpResponse:
    """GET /visit/?tunnel=<name>&next=<path> (protocol.TEAM_SIGNIN_PATH)."""
    name = request.GET.get(protocol.TUNNEL_PARAM, "").strip().lower()
    next_path = protocol.local_path(request.GET.get(protocol.NEXT_PARAM, ""))
    if not protocol.is_valid_subdomain(name):
        return _page(request, 400, "No such tunnel", "That link does not name a tunnel.")
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
    decision = await face.database_call(decide, user, name)
    if not decision.live:
        return _page(
            request,
            404,
            "This tunnel is not open",
            f"There is no live tunnel called {name!r} on this relay: its client may have "
            "stopped. Ask its owner to start it again, then reload the tunnel's page.",
        )
    if not decision.allowed:
        return _page(
            request,
            403,
            "Not on this tunnel's team",
            f"You are signed in as {user.get_username()}; the tunnel {name!r} is open only "
            "to its owner's team. Ask its owner to add you to one of their groups, or sign "
            "in as another user.",
            switch=True,
        )
    if waited := throttle.take_for(throttle.TICKET, f"user:{user.pk}"):
        return too_many(request, waited, "visits to team-only tunnels", "your account")
    target = (
        addresses.tunnel_url(name, addresses.public_port(request))
        + protocol.TICKET_PATH
        + "?"
        + urlencode(
            {
                protocol.TICKET_PARAM: face.issue_ticket(
                    name, user.pk, owner_user_id=decision.owner_id
                ),
                protocol.NEXT_PARAM: next_path,
            }
        )
    )
    answer = HttpResponseRedirect(target)
    answer["Cache-Control"] = "no-store"  # the ticket is in it
    answer["Referrer-Policy"] = "no-referrer"
    return answer


def _page(
    request: HttpRequest, status: int, title: str, message: str, *, switch: bool = False
) -> HttpResponse:
    answer = render(
        request,
        "tunnels/visitors/visit_refused.html",
        {
            "title": title,
            "message": message,
            "switch": switch,
            "again": request.get_full_path(),
        },
        status=status,
    )
    answer["Cache-Control"] = "no-store"
    return answer


def _pass_max_age_s() -> int:
    return int(settings.RELAY_VISITOR_COOKIE_MAX_AGE_S)
