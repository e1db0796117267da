"""The operator's console: plans, users, tokens, tunnel sessions and nodes. Visitor policy
(the reserved names' admin, the policy section) and abuse reports are in
tunnels/admin_access.py; suspensions in tunnels/admin_suspend.py; reserved TCP ports in
tunnels/admin_tcp.py."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from relay import protocol
from tunnels import addresses, control, suspensions
from tunnels.admin_access import VISITOR_POLICY_FIELDSET
from tunnels.admin_suspend import MaySuspend, suspend_action
from tunnels.admin_tcp import TCP_FIELDSET
from tunnels.models import (
    Account,
    ApiToken,
    Node,
    Plan,
    TunnelSession,
)
from tunnels.sizes import binary

# The port visitors use, read from the admin's own request while a changelist renders.
_public_port: ContextVar[int] = ContextVar("public_port", default=0)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "max_live_tunnels",
        "max_sockets_per_tunnel",
        "max_requests_per_minute",
        "max_bytes_per_day",
        "max_request_body_bytes",
        "idle_timeout_s",
        "allow_custom_subdomains",
        "allow_tcp",
        "max_tcp_tunnels",
        "visitor_auth",
        "warning_page",
    )
    search_fields = ("name",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "max_live_tunnels",
                    "max_sockets_per_tunnel",
                    "max_requests_per_minute",
                    "max_bytes_per_day",
                    "max_bytes_per_second",  # bandwidth per account (docs/quotas.md#bandwidth)
                    "max_request_body_bytes",
                    "idle_timeout_s",
                    "allow_custom_subdomains",
                    "max_reserved_names",  # on the account page (docs/account.md)
                    "inspect_requests",
                )
            },
        ),
        TCP_FIELDSET,
        VISITOR_POLICY_FIELDSET,
    )


class AccountInline(admin.StackedInline):
    model = Account
    can_delete = False
    verbose_name_plural = "relay plan"


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class RelayUserAdmin(MaySuspend, UserAdmin):
    inlines = [AccountInline]
    actions = ["suspend"]

    @admin.action(description="Suspend the selected users (with a reason)", permissions=["suspend"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Any]) -> TemplateResponse | None:
        return suspend_action(
            self,
            request,
            queryset,
            "user(s)",
            lambda users, reason: suspensions.suspend_users(users, reason, request.user),
        )


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("usable", "usable"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "usable":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(MaySuspend, admin.ModelAdmin):
    list_display = ("label", "user", "shown_prefix", "created", "last_used", "expires", "revoked")
    list_filter = (RevokedFilter, ("user", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    fields = ("user", "name", "plan", "expires", "shown_prefix", "created", "last_used")
    readonly_fields = ("shown_prefix", "created", "last_used", "revoked_at")
    autocomplete_fields = ("user",)
    actions = ["revoke", "suspend"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        if obj is None:  # adding: the prefix does not exist yet
            return ("user", "name", "plan", "expires")
        return (*self.fields, "revoked_at")

    @admin.display(description="name", ordering="name")
    def label(self, obj: ApiToken) -> str:
        return obj.name or "(unnamed)"

    @admin.display(description="prefix", ordering="prefix")
    def shown_prefix(self, obj: ApiToken) -> str:
        return f"lt_{obj.prefix}…" if obj.prefix else "-"

    @admin.display(boolean=True, ordering="revoked_at")
    def revoked(self, obj: ApiToken) -> bool:
        return obj.revoked

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        text = obj.set_new_secret()
        relay = addresses.relay_url(request)
        messages.success(
            request,
            f"The new token is {text} — copy it now: it is not stored and will not be shown "
            f"again. Use it as: {protocol.lt_command(relay, text)} "
            f"(or save it once with: lt login --host {relay} --token {text})",
        )

    @admin.action(description="Revoke the selected tokens (and close their tunnels)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = control.revoke_tokens(list(queryset), "token revoked by the operator")
        self.message_user(request, f"Revoked {count} token(s); their live tunnels are closing.")

    @admin.action(
        description="Suspend the selected tokens (with a reason)", permissions=["suspend"]
    )
    def suspend(
        self, request: HttpRequest, queryset: QuerySet[ApiToken]
    ) -> TemplateResponse | None:
        return suspend_action(
            self,
            request,
            queryset,
            "token(s)",
            lambda tokens, reason: suspensions.suspend_tokens(tokens, reason, request.user),
        )


class LiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "live"), ("closed", "closed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("live", "closed"):
            return queryset.filter(is_live=self.value() == "live")
        return queryset


@admin.register(TunnelSession)
class TunnelAdmin(MaySuspend, admin.ModelAdmin):
    list_display = (
        "public_link",
        "kind",
        "is_live",
        "owner",
        "token_name",
        "client_ip",
        "sockets_up",
        "requests",
        "traffic_in",
        "traffic_out",
        "opened_at",
        "last_activity",
    )
    list_filter = (LiveFilter, ("owner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("owner", "token")
    search_fields = ("subdomain",)
    readonly_fields = [f.name for f in TunnelSession._meta.fields]
    actions = ["disconnect", "disconnect_and_revoke", "suspend"]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        reset = _public_port.set(addresses.public_port(request))
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()  # while the port is known
            return response
        finally:
            _public_port.reset(reset)

    @admin.display(description="subdomain", ordering="subdomain")
    def public_link(self, obj: TunnelSession) -> str:
        if not obj.is_live:
            return obj.subdomain
        url = addresses.tunnel_url(obj.subdomain, _public_port.get())
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, obj.subdomain)

    @admin.display(description="kind", ordering="tcp_port")
    def kind(self, obj: TunnelSession) -> str:
        """HTTP, or a TCP tunnel's tcp://host:port."""
        return addresses.tcp_url(obj.tcp_port) if obj.tcp_port else "HTTP"

    @admin.display(description="token", ordering="token__name")
    def token_name(self, obj: TunnelSession) -> str:
        if obj.token is None:
            return "-"
        return obj.token.name or f"lt_{obj.token.prefix}…"

    @admin.display(description="sockets")
    def sockets_up(self, obj: TunnelSession) -> str:
        return f"{obj.sockets}/{obj.max_sockets}"

    @admin.display(description="in", ordering="bytes_in")
    def traffic_in(self, obj: TunnelSession) -> str:
        return binary(obj.bytes_in)

    @admin.display(description="out", ordering="bytes_out")
    def traffic_out(self, obj: TunnelSession) -> str:
        return binary(obj.bytes_out)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TunnelSession | None = None) -> bool:
        return False

    # Sessions are read-only in the admin, so the actions check the model permissions
    # themselves instead of has_change_permission (always False here).
    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tunnels.change_tunnelsession")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self.has_disconnect_permission(request) and request.user.has_perm(
            "tunnels.change_apitoken"
        )

    @admin.action(description="Disconnect the selected tunnels", permissions=["disconnect"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[TunnelSession]) -> None:
        names = list(queryset.filter(is_live=True).values_list("subdomain", flat=True))
        if names and not control.disconnect(names):
            self.message_user(request, _NO_LAYER, messages.ERROR)
            return
        self.message_user(
            request,
            f"Disconnecting {len(names)} live tunnel(s); their names and owners may not "
            f"register again for {settings.RELAY_DISCONNECT_COOLDOWN_S:g} s.",
        )

    @admin.action(
        description="Disconnect the selected tunnels and revoke their tokens",
        permissions=["revoke"],
    )
    def disconnect_and_revoke(
        self, request: HttpRequest, queryset: QuerySet[TunnelSession]
    ) -> None:
        names = list(queryset.filter(is_live=True).values_list("subdomain", flat=True))
        tokens = list(ApiToken.objects.filter(sessions__in=queryset).distinct())
        control.disconnect(names)
        revoked = control.revoke_tokens(tokens, "token revoked by the operator")
        self.message_user(
            request, f"Disconnecting {len(names)} live tunnel(s); revoked {revoked} token(s)."
        )

    @admin.action(
        description="Suspend the selected tunnels' names (with a reason)", permissions=["suspend"]
    )
    def suspend(
        self, request: HttpRequest, queryset: QuerySet[TunnelSession]
    ) -> TemplateResponse | None:
        return suspend_action(
            self,
            request,
            queryset,
            "tunnel name(s)",
            lambda sessions, reason: suspensions.suspend_names(
                [session.subdomain for session in sessions], reason, request.user
            ),
        )


_NO_LAYER = "There is no channel layer, so the relay cannot be told."


# --- scale-out --------------------------------------------------------------------------------
@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    """The relay nodes and their load as of their last heartbeat: written by the nodes
    themselves, so read-only here."""

    list_display = (
        "name",
        "advertise",
        "state",
        "last_heartbeat",
        "tunnels",
        "sockets",
        "in_flight",
        "requests",
        "forwarded",
        "started_at",
    )
    list_filter = ("draining",)
    search_fields = ("name", "advertise")
    readonly_fields = [f.name for f in Node._meta.fields]

    @admin.display(description="state")
    def state(self, obj: Node) -> str:
        age = (timezone.now() - obj.last_heartbeat).total_seconds()
        if age >= settings.RELAY_NODE_EXPIRY_S:
            return f"dead (silent {age:.0f} s)"
        return "draining" if obj.draining else "serving"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False
