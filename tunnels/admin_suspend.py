"""The operator's Suspend and Lift in the admin: the reason form behind the Suspend actions
(on tunnel sessions, tokens and users, tunnels/admin.py), and the Suspension admin, with its
add form (kind, target, reason) and its Lift action. Each is written to the admin's history
(LogEntry) on the object it concerns, with the reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from relay import protocol
from tunnels import control, suspensions
from tunnels.models import Suspension

TEMPLATE = "admin/tunnels/suspend.html"


# The relays hear a reason in the close message, which carries this many characters (it is
# also the closed session's close_reason): a longer one would reach visitors cut.
REASON_MAX_CHARS = protocol.CLOSE_REASON_MAX_CHARS
REASON_HELP = "Shown to the tunnel's client and to its visitors."
# Said (as a warning) after a Suspend or Lift when no relay could be told: the rows stand and
# refuse registrations, but live tunnels and the relays' memory do not change.
NO_LAYER_SUSPEND = (
    "There is no channel layer, so no relay was told: live tunnels keep running and "
    "visitors do not see the suspension page until the relay restarts (new registrations "
    "are refused from the database now). Configure CHANNEL_LAYERS (REDIS_URL) and restart "
    "the relays, or restart them now to apply it."
)
NO_LAYER_LIFT = (
    "There is no channel layer, so no relay was told: the lifted names still show the "
    "suspension page until the relay restarts. Configure CHANNEL_LAYERS (REDIS_URL), or "
    "restart the relays now."
)


def warn_if_unheard(modeladmin: admin.ModelAdmin, request: HttpRequest, text: str) -> None:
    if not control.reachable():
        modeladmin.message_user(request, text, messages.WARNING)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=REASON_MAX_CHARS, help_text=REASON_HELP)


class MaySuspend:
    """For a ModelAdmin with a Suspend action (`permissions=["suspend"]`): who may run it,
    whoever may add a Suspension row."""

    def has_suspend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tunnels.add_suspension")


def suspend_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    what: str,
    suspend: Callable[[list[Any], str], Sequence[Suspension]],
) -> TemplateResponse | None:
    """An admin action's two steps: the reason form, then `suspend(objects, reason)`, each
    object's history noted."""
    objects = list(queryset)
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        reason = form.cleaned_data["reason"]
        rows = suspend(objects, reason)
        for obj in objects:
            modeladmin.log_change(request, obj, f"Suspended: {reason}")
        closed = sorted({name for row in rows for name in row.names})
        modeladmin.message_user(
            request,
            f"Suspended {len(rows)} {what}"
            + (f"; closing and suspending {', '.join(closed)}." if closed else "."),
        )
        warn_if_unheard(modeladmin, request, NO_LAYER_SUSPEND)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"Suspend {what}",
        "what": what,
        "targets": [str(obj) for obj in objects],
        "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        "action": request.POST.get("action", ""),
        "select_across": request.POST.get("select_across", "0"),  # "all N selected"
        "form": form,
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, TEMPLATE, context)


class SuspensionForm(forms.ModelForm):
    reason = forms.CharField(max_length=REASON_MAX_CHARS, help_text=REASON_HELP)

    class Meta:
        model = Suspension
        fields = ("kind", "name", "token", "user", "reason")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        needed = {Suspension.NAME: "name", Suspension.TOKEN: "token", Suspension.USER: "user"}
        field = needed.get(kind or "")
        if field is not None and not data.get(field):
            self.add_error(field, f"A suspension of a {field} needs the {field}.")
        for other in needed.values():
            if other != field and data.get(other):
                self.add_error(other, f"Leave this empty for a suspension of a {field}.")
        name = data.get("name")
        if field == "name" and name and not protocol.is_valid_subdomain(name):
            self.add_error(
                "name",
                f"Not a tunnel name: {protocol.SUBDOMAIN_RULE} (the part before the relay's "
                "domain).",
            )
        return data


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("lifted", "lifted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("active", "lifted"):
            return queryset.filter(lifted_at__isnull=self.value() == "active")
        return queryset


@admin.register(Suspension)
class SuspensionAdmin(admin.ModelAdmin):
    form = SuspensionForm
    list_display = ("__str__", "reason", "shown_names", "created", "created_by", "is_active")
    list_filter = (ActiveFilter, "kind")
    list_select_related = ("token", "user", "created_by")
    search_fields = ("name", "reason", "user__username", "token__prefix")
    autocomplete_fields = ("user", "token")
    actions = ["lift"]

    @admin.display(description="names")
    def shown_names(self, obj: Suspension) -> str:
        return ", ".join(str(name) for name in obj.names or ()) or "-"

    @admin.display(boolean=True, description="active", ordering="lifted_at")
    def is_active(self, obj: Suspension) -> bool:
        return obj.active

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return ()
        return [f.name for f in Suspension._meta.fields]  # kept as made: lift it instead

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # a deleted suspension would not be lifted on the relays: Lift it

    def save_model(self, request: HttpRequest, obj: Suspension, form: Any, change: bool) -> None:
        if change:
            return  # read-only once made
        obj.created_by_id = request.user.pk
        suspensions.apply(obj)
        target = obj.user if obj.user_id else obj.token if obj.token_id else None
        if target is not None:
            self.log_change(request, target, f"Suspended: {obj.reason}")
        warn_if_unheard(self, request, NO_LAYER_SUSPEND)

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tunnels.change_suspension")

    @admin.action(description="Lift the selected suspensions", permissions=["lift"])
    def lift(self, request: HttpRequest, queryset: QuerySet[Suspension]) -> None:
        lifted = suspensions.lift(list(queryset), request.user)
        for row in lifted:
            self.log_change(request, row, f"Lifted (was: {row.reason})")
        self.message_user(request, f"Lifted {len(lifted)} suspension(s).")
        if lifted:
            warn_if_unheard(self, request, NO_LAYER_LIFT)
