"""Self sign-up at /accounts/signup/, only when ACCOUNT_SIGNUP_OPEN. SEAM STUB (issue 14)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views import View


class SignUp(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        raise Http404("Sign-up is closed.")
