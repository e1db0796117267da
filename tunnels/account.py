"""The account page of every user (`/account/`): live tunnels with their traffic, recent
history, API tokens, reserved names, the plan and today's usage. The admin stays the
operators'; this page shows a user only what is theirs.

The page polls `data` every POLL_MS and swaps in the fragments it returns, rendered by the
same templates as the page (like the admin dashboard, tunnels/dashboard.py). Creating a
token answers the POST with the page itself, secret included, under `Cache-Control:
no-store`: the secret is never in a redirect, the session or a message, so it is shown once.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from tunnels import addresses, control, form_nonce, reservations
from tunnels.account_forms import NameForm, TokenForm
from tunnels.account_view import context_of, user_id_of
from tunnels.models import ApiToken
from tunnels.plans import limits_for

POLL_MS = 2000
PAGE_TEMPLATE = "tunnels/account/account.html"
# The fragments `data` re-renders, by the id of the element each replaces.
FRAGMENTS = {
    "live": "tunnels/account/_live.html",
    "history": "tunnels/account/_history.html",
    "usage": "tunnels/account/_usage.html",
    "tokens": "tunnels/account/_tokens.html",
    "names": "tunnels/account/_names.html",
    "tcp_ports": "tunnels/account/_tcp_ports.html",
}


# The new-token form's nonces in the session (tunnels/form_nonce.py).
TOKEN_FORM = "account_token_form"
CREATED_ALREADY = (
    "This token was created already: its secret was shown once; revoke it and make a new one "
    "if you lost it."
)
OUT_OF_DATE = "This form is out of date: create the token again with the form below."


def _page(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    context = {
        **context_of(request),
        "token_form": extra.pop("token_form", None) or TokenForm(),
        "name_form": extra.pop("name_form", None) or NameForm(user_id=user_id_of(request)),
        "poll_ms": POLL_MS,
        "token_nonce": form_nonce.issue(request, TOKEN_FORM),
        **extra,
    }
    answer = render(request, PAGE_TEMPLATE, context, status=status)
    add_never_cache_headers(answer)  # a user's own figures (and once, a secret): no-store
    return answer


@login_required
@require_GET
def page(request: HttpRequest) -> HttpResponse:
    return _page(request)


def data(request: HttpRequest) -> JsonResponse:
    if request.method not in ("GET", "HEAD"):
        answer = JsonResponse({"message": "Read your account's figures with GET."}, status=405)
        answer["Allow"] = "GET, HEAD"
        return answer
    if not request.user.is_authenticated:  # the script goes to the sign-in on this
        return JsonResponse({"message": "Sign in to see your account."}, status=401)
    context = context_of(request)
    answer = JsonResponse(
        {
            "live": [tunnel["name"] for tunnel in context["live"]],
            "html": {
                key: render_to_string(template, context, request)
                for key, template in FRAGMENTS.items()
            },
        }
    )
    add_never_cache_headers(answer)
    return answer


@login_required
@require_POST
def create_token(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    state = form_nonce.spend(request, TOKEN_FORM, str(request.POST.get(form_nonce.FIELD, "")))
    if state != form_nonce.OPEN:  # a reload of the answer, or a form from an old page
        notice = CREATED_ALREADY if state == form_nonce.SPENT else OUT_OF_DATE
        return _page(request, status=409, token_notice=notice)
    if not form.is_valid():
        return _page(request, status=400, token_form=form)
    token, secret = ApiToken.issue(
        request.user,  # type: ignore[arg-type]
        name=form.cleaned_data["name"],
        expires_in=form.expires_in(),
    )
    relay = addresses.relay_url(request)
    return _page(
        request,
        new_token=token,
        new_secret=secret,
        # The secret stays out of the command: on a command line it would be in `ps` and the
        # shell's history. `--token` alone asks for it on the terminal.
        login_command=f"lt login --host {relay} --token",
    )


@login_required
@require_POST
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    token = ApiToken.objects.filter(pk=pk, user_id=user_id_of(request)).first()
    if token is None:
        raise Http404("You have no such token.")
    # A token is revoked because it leaked or its laptop is gone: its live tunnels close too,
    # as with the operator's Revoke (tunnels/control.py), on every relay.
    if control.revoke_tokens([token], "token revoked by its owner"):
        messages.success(
            request,
            f"Revoked the token {token}: its live tunnels are closed and no new tunnel can be "
            "opened with it.",
        )
    else:
        messages.info(request, f"The token {token} was revoked already.")
    return redirect("account")


@login_required
@require_POST
def reserve_name(request: HttpRequest) -> HttpResponse:
    form = NameForm(request.POST, user_id=user_id_of(request))
    if not form.is_valid():
        return _page(request, status=400, name_form=form)
    name = form.cleaned_data["name"]
    try:
        reservations.reserve(user_id_of(request), name, limits_for(user_id_of(request)))
    except reservations.NotReserved as refusal:
        form.add_error("name", str(refusal))
        return _page(request, status=409, name_form=form)
    messages.success(request, f"Reserved {name}: only you can open a tunnel under it.")
    return redirect("account")


@login_required
@require_POST
def release_name(request: HttpRequest, pk: int) -> HttpResponse:
    name = reservations.release(user_id_of(request), pk)
    if name is None:
        raise Http404("You have no such reserved name.")
    messages.success(request, f"Released {name}: anyone may use it now.")
    return redirect("account")
