from __future__ import annotations

from django.contrib import admin

from tunnels.models import Tunnel


@admin.register(Tunnel)
class TunnelAdmin(admin.ModelAdmin):
    list_display = (
        "subdomain",
        "is_live",
        "client_ip",
        "sockets",
        "requests",
        "bytes_in",
        "bytes_out",
        "opened_at",
        "closed_at",
        "close_reason",
    )
    list_filter = ("is_live",)
    search_fields = ("subdomain", "client_ip")
    readonly_fields = [f.name for f in Tunnel._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
