"""What the account page knows of one user's tunnels: live ones, recent history, today's
usage and the plan's limits. Read once per poll of the page (every 2 s): a few queries and
one look at the registry, never anything on the byte path.

On a single relay the live tunnels come from the relay's memory (relay.face.account_tunnels:
counters now, rules in force, the last hour per minute). On a node of a cluster
(RELAY_NODE_NAME set) they come from the live TunnelSession rows of every node, like the
admin dashboard (tunnels/cluster_view.py): counters lag by up to RELAY_FLUSH_S; the rules and
the chart are known only to the node that holds the tunnel, so a tunnel of another node shows
neither.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from relay import face
from relay.face import AccountTunnel, Counts
from tunnels import usage_rows
from tunnels.models import ReservedSubdomain, TunnelSession

HISTORY_ROWS = 10  # closed sessions shown under "Recent tunnels"


@dataclass(frozen=True)
class Usage:
    live_tunnels: int
    requests_today: int
    bytes_today: int
    reserved_names: int
    live_tcp_tunnels: int = 0  # of live_tunnels, the TCP ones (`lt tcp`)


async def _on_the_loop(user_id: int) -> list[AccountTunnel]:
    return face.account_tunnels(user_id)


def live_tunnels(user_id: int) -> list[AccountTunnel]:
    """The user's live tunnels: this relay's memory, or every node's rows on a cluster."""
    here = async_to_sync(_on_the_loop)(user_id)
    if not settings.RELAY_NODE_NAME:
        return here
    held = {tunnel.name: tunnel for tunnel in here}  # rules and chart: this node's own
    rows = TunnelSession.objects.filter(is_live=True, owner_id=user_id).order_by("subdomain")
    return [
        held.get(row.subdomain)
        or AccountTunnel(
            name=row.subdomain,
            client_ip=row.client_ip,
            sockets=row.sockets,
            max_sockets=row.max_sockets,
            counts=Counts(row.requests, row.bytes_in, row.bytes_out),
            opened_at=row.opened_at.timestamp(),
            rules=None,  # the node holding it knows them
            minutes=(),
            tcp_port=row.tcp_port or 0,  # its connections open now: only its node knows
        )
        for row in rows
    ]


def recent_sessions(user_id: int) -> list[TunnelSession]:
    """The user's last closed tunnels, newest first."""
    return list(
        TunnelSession.objects.filter(owner_id=user_id, is_live=False).order_by("-closed_at")[
            :HISTORY_ROWS
        ]
    )


def start_of_today() -> datetime.datetime:
    """Midnight of today in the site's time zone (TIME_ZONE, UTC by default)."""
    today = timezone.localdate()
    return timezone.make_aware(datetime.datetime.combine(today, datetime.time()))


def usage_of(user_id: int, live: list[AccountTunnel]) -> Usage:
    """Today's usage: the counters of the tunnels closed today plus the live ones' (a tunnel
    open since before midnight counts whole), or, when larger, the account's bytes today as
    the relays counted them for its quota (tunnels/usage_rows.py, without Redis: as of the
    last batch)."""
    day = int(start_of_today().timestamp())
    _, counted = usage_rows.day_usage(f"user:{user_id}", day)
    closed = TunnelSession.objects.filter(
        owner_id=user_id, is_live=False, closed_at__gte=start_of_today()
    ).aggregate(requests=Sum("requests"), bytes_in=Sum("bytes_in"), bytes_out=Sum("bytes_out"))
    return Usage(
        live_tunnels=len(live),
        requests_today=(closed["requests"] or 0) + sum(t.counts.requests for t in live),
        bytes_today=max(
            counted,
            (closed["bytes_in"] or 0)
            + (closed["bytes_out"] or 0)
            + sum(t.counts.bytes_in + t.counts.bytes_out for t in live),
        ),
        reserved_names=ReservedSubdomain.objects.filter(user_id=user_id).count(),
        live_tcp_tunnels=sum(1 for t in live if t.tcp_port),
    )
