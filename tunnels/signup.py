"""Self sign-up at /accounts/signup/, only when the operator sets ACCOUNT_SIGNUP_OPEN (off by
default: operators create accounts in the admin). Closed, it answers 404 with a page saying
so and whom to ask. Open, it is Django's UserCreationForm (AUTH_PASSWORD_VALIDATORS apply),
limited per address like the sign-in (tunnels/throttle.py): every attempt counts, since a
successful one makes an account. A new user is signed in and lands on their account page.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from tunnels import throttle
from tunnels.identity import identify
from tunnels.signin import too_many

# Accounts made (or tried) per address: a household or an office signs up a few people an
# hour; a script making accounts in a loop is stopped.
SIGNUP = throttle.Rule("throttle:signup", limit=10, window_s=3600)
TEMPLATE = "tunnels/visitors/signup.html"
CLOSED_TEMPLATE = "tunnels/visitors/signup_closed.html"


class SignUp(View):
    def dispatch(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not settings.ACCOUNT_SIGNUP_OPEN:
            return render(request, CLOSED_TEMPLATE, status=404)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[return-value]

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, TEMPLATE, {"form": UserCreationForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        if waited := throttle.take(SIGNUP, identify(request).ip):
            return too_many(request, waited, "sign-ups")
        form: UserCreationForm[Any] = UserCreationForm(request.POST)
        if not form.is_valid():
            return render(request, TEMPLATE, {"form": form}, status=400)
        user = form.save()
        login(request, user)
        return redirect("account")
