"""What the account page shows one user, as template context: built for the page and for
each poll of `account/data` alike, from the user's own rows and live tunnels only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from relay.face import AccountTunnel
from tunnels import addresses, live_rows, tcp_ports, usage
from tunnels.chart import traffic_svg
from tunnels.models import ApiToken, ReservedSubdomain
from tunnels.plans import PlanLimits, limits_for
from tunnels.sizes import binary


def user_id_of(request: HttpRequest) -> int:
    """The signed-in user's id (the views are behind login_required)."""
    pk = request.user.pk
    if pk is None:
        raise PermissionError("the account page needs a signed-in user")
    return int(pk)


def token_state(token: ApiToken, now: datetime) -> str:
    if token.revoked:
        return "revoked"
    return "expired" if token.is_expired(now) else "active"


def _tunnel_row(tunnel: AccountTunnel, port: int) -> dict[str, Any]:
    return {
        **live_rows.figures(tunnel, port),
        "opened": datetime.fromtimestamp(tunnel.opened_at, UTC),
        "rules": tunnel.rules,
        "chart": traffic_svg(tunnel.minutes, chart_id=f"chart-{tunnel.name}")
        if tunnel.minutes
        else None,
    }


def _limit(value: int) -> str:
    return str(value) if value else "no limit"


def _size(value: int) -> str:
    return binary(value) if value else "no limit"


def _per_s(value: int) -> str:
    return f"{binary(value)}/s" if value else "no limit"


def _usage_rows(limits: PlanLimits, used: usage.Usage) -> list[dict[str, Any]]:
    """Each limit beside what is used of it today (`cap` 0: no limit, no bar), with `shown`:
    both in words ("15 MiB of 977 KiB" for bytes: once "16000000 of 1000000")."""
    rows: list[dict[str, Any]] = [
        {"label": "Live tunnels", "used": used.live_tunnels, "cap": limits.max_live_tunnels},
        {"label": "Reserved names", "used": used.reserved_names, "cap": limits.max_reserved_names},
        *(
            [
                {
                    "label": "Live TCP tunnels",
                    "used": used.live_tcp_tunnels,
                    "cap": limits.max_tcp_tunnels,
                }
            ]
            if limits.allow_tcp and tcp_ports.port_range() is not None
            else []
        ),
        {"label": "Requests today", "used": used.requests_today, "cap": 0},
        {
            "label": "Bytes today (UTC)",
            "used": used.bytes_today,
            "cap": limits.max_bytes_per_day,  # the account's, all its tunnels (docs/quotas.md)
            "bytes": True,
        },
    ]
    for row in rows:
        say = binary if row.get("bytes") else str
        so_far, cap = say(row["used"]), say(row["cap"])
        row["shown"] = f"{so_far} of {cap}" if row["cap"] else so_far
    return rows


def context_of(request: HttpRequest) -> dict[str, Any]:
    user_id = user_id_of(request)
    port = addresses.public_port(request)
    live = usage.live_tunnels(user_id)
    limits = limits_for(user_id)
    used = usage.usage_of(user_id, live)
    now = timezone.now()
    tokens = list(ApiToken.objects.filter(user_id=user_id).order_by("-created"))
    return {
        "live": [_tunnel_row(tunnel, port) for tunnel in live],
        "history": usage.recent_sessions(user_id),
        "limits": limits,
        "usage": used,
        "usage_rows": _usage_rows(limits, used),
        "per_tunnel_limits": [
            ("Requests per minute", _limit(limits.max_requests_per_minute)),
            ("Bytes per day", _size(limits.max_bytes_per_day)),
            ("Bandwidth, all tunnels, each way", _per_s(limits.max_bytes_per_second)),
            ("Request body size", _size(limits.max_request_body_bytes)),
            ("Idle timeout", f"{limits.idle_timeout_s} s" if limits.idle_timeout_s else "never"),
            ("Sockets per tunnel", str(limits.max_sockets)),
        ],
        "tokens": [(token, token_state(token, now)) for token in tokens],
        "names": list(ReservedSubdomain.objects.filter(user_id=user_id).order_by("name")),
        "relay_url": addresses.relay_url(request),
        # TCP tunnels (`lt tcp`): whether this relay offers them, and the user's ports.
        "tcp_offered": tcp_ports.port_range() is not None,
        "tcp_ports": tcp_ports.reserved_of(user_id),
    }
