"""The operator's visitor policy and visitors' abuse reports in the admin: the policy section
shared by plans (tunnels/admin.py) and reserved names, the reserved names' admin, and the
abuse reports from the warning page (tunnels/reports.py), read-only but for "handled"."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tunnels.models import AbuseReport, ReservedSubdomain

# Visitor policy (tunnels/access.py combines it with the client's rules at registration):
# the same section on a plan and on a reserved name.
VISITOR_POLICY_FIELDSET: tuple[str, Any] = (
    "Visitor policy",
    {
        "fields": ("visitor_auth", "cidr_allow", "cidr_deny", "warning_page"),
        "description": "Who may visit these tunnels. Clients may tighten it (lt --basic-auth, "
        "--cidr-allow, --cidr-deny, --private), never loosen it. It applies to tunnels "
        "registered after it is saved: a live tunnel keeps its rules until its client "
        "registers again.",
    },
)


@admin.register(ReservedSubdomain)
class ReservedSubdomainAdmin(admin.ModelAdmin):
    list_display = ("name", "holder", "note", "visitor_auth", "warning_page", "created")
    list_select_related = ("user",)
    search_fields = ("name", "user__username", "note")
    autocomplete_fields = ("user",)
    fieldsets = ((None, {"fields": ("name", "user", "note")}), VISITOR_POLICY_FIELDSET)

    @admin.display(description="reserved for", ordering="user__username")
    def holder(self, obj: ReservedSubdomain) -> str:
        return str(obj.user) if obj.user_id else "the operator (nobody may register it)"


@admin.register(AbuseReport)
class AbuseReportAdmin(admin.ModelAdmin):
    """Visitors' reports from the warning page: read-only but for "handled"."""

    list_display = (
        "tunnel",
        "url",
        "owner",
        "short_note",
        "reporter_address",
        "owner_address",
        "created",
        "handled",
    )
    list_filter = ("handled", "created")
    list_select_related = ("owner",)
    search_fields = ("tunnel", "url", "note", "owner__username", "reporter_address")
    readonly_fields = [f.name for f in AbuseReport._meta.fields]
    actions = ["mark_handled"]

    @admin.display(description="note")
    def short_note(self, obj: AbuseReport) -> str:
        return obj.note if len(obj.note) <= 120 else obj.note[:119] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AbuseReport | None = None) -> bool:
        return False

    def has_mark_handled_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tunnels.change_abusereport")

    @admin.action(description="Mark the selected reports handled", permissions=["mark_handled"])
    def mark_handled(self, request: HttpRequest, queryset: QuerySet[AbuseReport]) -> None:
        count = queryset.filter(handled=False).update(handled=True)
        self.message_user(request, f"Marked {count} report(s) handled.")
