"""The account page's two forms: a new API token (a name and an expiry) and a name to
reserve, each saying in plain words what is wrong with what was typed."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings

from relay import protocol
from tunnels.models import ApiToken, ReservedSubdomain, Suspension, TunnelSession
from tunnels.plain_text import plain
from tunnels.route_names import site_route_names

# The expiries offered for a new token, in days ("" : never).
EXPIRY_CHOICES = [("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("", "Never")]
DEFAULT_EXPIRY = "30"


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=ApiToken._meta.get_field("name").max_length,
        help_text="What or who it is for, e.g. “laptop” or “CI”.",
    )
    expiry = forms.ChoiceField(choices=EXPIRY_CHOICES, initial=DEFAULT_EXPIRY, required=False)

    def clean_name(self) -> str:
        name = plain(str(self.cleaned_data["name"]))
        if not name:
            raise forms.ValidationError("Give the token a name you can read, e.g. “laptop”.")
        return name

    def expires_in(self) -> timedelta | None:
        days = self.cleaned_data.get("expiry") or ""
        return timedelta(days=int(days)) if days else None


class NameForm(forms.Form):
    name = forms.CharField(max_length=ReservedSubdomain._meta.get_field("name").max_length)

    def __init__(self, *args: object, user_id: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.user_id = user_id

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip().lower()
        if not protocol.is_valid_subdomain(name):
            raise forms.ValidationError(
                f"{name!r} cannot be a tunnel name: {protocol.SUBDOMAIN_RULE}."
            )
        if name in site_route_names() or name in settings.RELAY_RESERVED_NAMES:
            raise forms.ValidationError(f"{name!r} is kept by the relay. Pick another name.")
        row = ReservedSubdomain.objects.filter(name=name).first()
        if row is not None:
            mine = row.user_id == self.user_id
            raise forms.ValidationError(
                f"You have reserved {name!r} already."
                if mine
                else f"{name!r} is reserved already. Pick another name."
            )
        if (
            TunnelSession.objects.filter(subdomain=name, is_live=True)
            .exclude(owner_id=self.user_id)
            .exists()
        ):
            raise forms.ValidationError(
                f"{name!r} is in use by another tunnel now. Pick another name."
            )
        if Suspension.objects.active().filter(kind=Suspension.NAME, name=name).exists():
            raise forms.ValidationError(
                f"{name!r} is suspended by the relay's operator. Pick another name."
            )
        return name
