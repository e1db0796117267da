"""TCP tunnels in the admin: the reserved TCP ports (`lt tcp --remote-port N`), with a form
that refuses a port this relay cannot hand out and says who holds a port reserved already.
The plans' TCP fields are in PlanAdmin (tunnels/admin.py), the sessions' tcp:// address in
TunnelAdmin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin

from tunnels import tcp_ports
from tunnels.models import ReservedTcpPort

# The plan's fieldset (PlanAdmin).
TCP_FIELDSET: tuple[str, Any] = (
    "TCP tunnels",
    {
        "fields": ("allow_tcp", "max_tcp_tunnels"),
        "description": "lt tcp --port 5432: a public TCP port of RELAY_TCP_PORTS for a local "
        "service. A TCP tunnel has no passwords, team sign-in or warning page: a plan whose "
        "visitor policy requires sign-in cannot open TCP tunnels; its networks apply.",
    },
)


def holder(row: ReservedTcpPort) -> str:
    return str(row.user) if row.user_id else "the operator (no tunnel gets it)"


class ReservedTcpPortForm(forms.ModelForm):
    class Meta:
        model = ReservedTcpPort
        fields = ("port", "user", "note")

    def clean_port(self) -> int:
        port: int = self.cleaned_data["port"]
        taken = ReservedTcpPort.objects.filter(port=port).exclude(pk=self.instance.pk).first()
        if taken is not None:
            raise forms.ValidationError(
                f"Port {port} is reserved already, for {holder(taken)}: edit that reservation "
                "instead, or pick another port."
            )
        if settings.RELAY_NODE_NAME:  # scale-out: each node has its own range
            if not 1 <= port <= 65535:
                raise forms.ValidationError(f"Port {port} is not a TCP port (1-65535).")
            return port
        ports = tcp_ports.port_range()
        if ports is None:
            raise forms.ValidationError(
                "This relay offers no TCP tunnels (RELAY_TCP_PORTS is not set), so no port "
                "can be reserved: set RELAY_TCP_PORTS first."
            )
        if not tcp_ports.in_range(port):
            raise forms.ValidationError(
                f"Port {port} is outside this relay's TCP ports "
                f"(RELAY_TCP_PORTS={tcp_ports.range_text(ports)}): no tunnel could get it."
            )
        return port


@admin.register(ReservedTcpPort)
class ReservedTcpPortAdmin(admin.ModelAdmin):
    form = ReservedTcpPortForm
    list_display = ("port", "reserved_for", "note", "created")
    list_select_related = ("user",)
    search_fields = ("=port", "user__username", "note")
    autocomplete_fields = ("user",)
    fields = ("port", "user", "note")

    @admin.display(description="reserved for", ordering="user__username")
    def reserved_for(self, obj: ReservedTcpPort) -> str:
        return holder(obj)
