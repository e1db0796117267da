"""A visitor's abuse report (the warning page's "Report abuse"): GET
/report/?tunnel=<name>&url=<url> (protocol.ABUSE_REPORT_PATH) shows a form; its POST
(CSRF-checked, rate-limited per address) records an AbuseReport with the tunnel's owner and
client address as its live session row has them (a name that is not live is recorded all the
same). The admin lists them."""

from __future__ import annotations

import ipaddress

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from relay import protocol
from tunnels import throttle
from tunnels.identity import identify
from tunnels.models import AbuseReport, TunnelSession
from tunnels.signin import too_many

MAX_NOTE_CHARS = 2000
MAX_URL_CHARS = 2000


class ReportForm(forms.Form):
    tunnel = forms.CharField(max_length=63, widget=forms.HiddenInput)
    url = forms.CharField(max_length=MAX_URL_CHARS, required=False, widget=forms.HiddenInput)
    note = forms.CharField(
        max_length=MAX_NOTE_CHARS,
        required=False,
        label="What is wrong with this page?",
        widget=forms.Textarea(attrs={"rows": 6, "maxlength": MAX_NOTE_CHARS}),
    )

    def clean_tunnel(self) -> str:
        name = str(self.cleaned_data["tunnel"]).strip().lower()
        if not protocol.is_valid_subdomain(name):
            raise forms.ValidationError(f"That is not a tunnel name: {protocol.SUBDOMAIN_RULE}.")
        return name

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"]).strip()
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
            raise forms.ValidationError("That is not a URL.")
        return url


@require_http_methods(["GET", "HEAD", "POST"])
def report(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        form = ReportForm(
            initial={
                "tunnel": request.GET.get(protocol.TUNNEL_PARAM, ""),
                "url": request.GET.get("url", "")[:MAX_URL_CHARS],
            }
        )
        name = request.GET.get(protocol.TUNNEL_PARAM, "").strip().lower()
        if not protocol.is_valid_subdomain(name):
            return _form(request, form, "", status=400)
        return _form(request, form, name)
    form = ReportForm(request.POST)
    if not form.is_valid():
        return _form(request, form, str(request.POST.get("tunnel", ""))[:63], status=400)
    ip = identify(request).ip
    if waited := throttle.take(throttle.REPORT, ip):
        return too_many(request, waited, "abuse reports")
    name = form.cleaned_data["tunnel"]
    live = (
        TunnelSession.objects.filter(subdomain=name, is_live=True)
        .order_by("-opened_at")
        .values("owner_id", "client_ip")
        .first()
    )
    AbuseReport.objects.create(
        tunnel=name,
        url=form.cleaned_data["url"],
        owner_id=live["owner_id"] if live else None,
        owner_address=live["client_ip"] if live else None,
        note=form.cleaned_data["note"],
        reporter_address=_address(ip),
    )
    return render(request, "tunnels/visitors/report_thanks.html", {"tunnel": name})


def _form(request: HttpRequest, form: ReportForm, name: str, status: int = 200) -> HttpResponse:
    return render(
        request, "tunnels/visitors/report.html", {"form": form, "tunnel": name}, status=status
    )


def _address(ip: str) -> str:
    """The reporter's address as the model stores it (an unreadable one: the unspecified)."""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return "::"
