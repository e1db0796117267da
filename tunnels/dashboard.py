"""The admin's live dashboard: tunnels now, traffic rates, the last hour, and disconnects.

Staff only (wrapped in `admin.site.admin_view` in tunnelsite/urls.py). What is live comes
from the relay's memory (the registry), the rates from relay/traffic.py, and the hour from
the minute rows every node writes (tunnels/traffic_rows.py, one query per poll) plus what
this node has not written yet, so the chart covers every node and survives a restart.
On a node of a cluster (RELAY_NODE_NAME set) what is live, and each node's load, come from
the database instead (tunnels/cluster_view.py): every node's tunnels, not only this one's;
the rates add the other live nodes' last minute and a bit from their rows to this node's.
This node's unwritten minutes and the rows are read so that a write committing between the two
is never counted twice (`_minute_rows`).
The page polls `data` every 2 s and swaps in the fragments it returns, rendered by the same
templates as the page itself. Disconnecting goes through tunnels/control.py, like the
admin's action.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from relay import face, protocol
from relay.face import Counts, LiveTunnel, MinuteRollup, Snapshot
from relay.protocol import HISTORY_MINUTES
from tunnels import addresses, cluster_view, control, live_rows, traffic_rows
from tunnels.chart import traffic_svg
from tunnels.models import ApiToken

POLL_MS = 2000
STATS_TEMPLATE = "admin/tunnels/dashboard_stats.html"
TUNNELS_TEMPLATE = "admin/tunnels/dashboard_tunnels.html"
NODES_TEMPLATE = "admin/tunnels/dashboard_nodes.html"  # scale-out


async def _snapshot_on_the_loop() -> Snapshot:
    return face.dashboard_snapshot()


def take_snapshot() -> Snapshot:
    """Read the registry on the relay's event loop (this view runs in a worker thread),
    so the tunnels and their counters are seen in one consistent state."""
    return async_to_sync(_snapshot_on_the_loop)()


async def _writes_begun_on_the_loop() -> int:
    return face.minute_writes_begun()


def _minute_rows(shot: Snapshot) -> tuple[Snapshot, list[MinuteRollup]]:
    """Every node's minute rows of the hour, read after `shot` so that this node's traffic
    is in exactly one of them: a write of this node's minutes (relay/traffic.py) that
    commits between the snapshot's `unwritten` and the rows would put it in both, a spike
    on the chart. So the snapshot must have been taken with no write running and no write
    may have begun by the time the rows are read (counted on the loop, where writes begin);
    else the snapshot is taken again and the rows read again, once. A second miss means a
    write has been running across both reads (a slow database): its minutes are most likely
    not in the rows yet, and the answer takes them from the snapshot."""
    for attempt in range(2):
        if attempt:
            shot = take_snapshot()
        current = int(shot.taken_at // 60) * 60
        rows = traffic_rows.by_node_since(current - 60 * (HISTORY_MINUTES - 1))
        as_of = shot.unwritten_as_of
        if as_of is not None and async_to_sync(_writes_begun_on_the_loop)() == as_of:
            break
    return shot, rows


def may_disconnect(request: HttpRequest) -> bool:
    return request.user.has_perm("tunnels.change_tunnelsession")


def _rows(request: HttpRequest, live: list[LiveTunnel]) -> list[dict[str, Any]]:
    """The live tunnels with their owners' and tokens' names (two queries, not per row)."""
    user_ids = {t.user_id for t in live if t.user_id is not None}
    token_ids = {t.token_id for t in live if t.token_id is not None}
    users = dict(
        get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")
        if user_ids
        else []
    )
    tokens = {
        token.pk: token.name or f"lt_{token.prefix}…"
        for token in (ApiToken.objects.filter(pk__in=token_ids) if token_ids else [])
    }
    port = addresses.public_port(request)
    return [
        {
            **live_rows.figures(tunnel, port),
            "owner": (
                users.get(tunnel.user_id, f"user #{tunnel.user_id}")
                if tunnel.user_id is not None
                else ""
            ),
            "token": tokens.get(tunnel.token_id, "") if tunnel.token_id is not None else "",
            "node": tunnel.node,  # scale-out
        }
        for tunnel in live
    ]


def _cluster_wide(shot: Snapshot) -> tuple[Snapshot, list[cluster_view.NodeRow]]:
    """scale-out: every node's live tunnels and load, from the database; the rates and the
    chart stay this node's own."""
    nodes = cluster_view.node_rows(settings.RELAY_NODE_EXPIRY_S)
    alive = [node for node in nodes if node.alive]
    # A TCP tunnel's connections open now are in its node's memory only: this node's own.
    here = {tunnel.name: tunnel.tcp_connections for tunnel in shot.live if tunnel.tcp_port}
    shot = dataclasses.replace(
        shot,
        live=[
            dataclasses.replace(row, tcp_connections=here[row.name]) if row.name in here else row
            for row in cluster_view.live_tunnels()
        ],
        sockets=sum(node.sockets for node in alive),
        in_flight=sum(node.in_flight for node in alive),
    )
    return shot, nodes


def _with_every_nodes_traffic(
    shot: Snapshot, rows: list[MinuteRollup], alive: set[str] | None
) -> Snapshot:
    """The hour from the minute rows of every node plus this node's unwritten traffic; on a
    cluster (`alive`: the live nodes' names), the rates plus the other live nodes' averages
    over the previous minute and the current one so far, from their rows."""
    current = int(shot.taken_at // 60) * 60
    shot = dataclasses.replace(shot, minutes=traffic_rows.hour([*rows, *shot.unwritten], current))
    if alive is None:
        return shot
    since = current - 60
    others = Counts()
    for row in _others(rows, alive - {settings.RELAY_NODE_NAME}, since):
        others = others.plus(Counts(row.requests, row.bytes_in, row.bytes_out))
    elapsed = max(shot.taken_at - since, 1.0)
    rates = shot.rates
    return dataclasses.replace(
        shot,
        rates=dataclasses.replace(
            rates,
            requests_per_s=rates.requests_per_s + others.requests / elapsed,
            bytes_in_per_s=rates.bytes_in_per_s + others.bytes_in / elapsed,
            bytes_out_per_s=rates.bytes_out_per_s + others.bytes_out / elapsed,
        ),
    )


def _others(rows: list[MinuteRollup], nodes: set[str], since: int) -> list[MinuteRollup]:
    return [row for row in rows if row.node in nodes and row.start >= since]


def _context(request: HttpRequest, shot: Snapshot) -> dict[str, Any]:
    shot, rows = _minute_rows(shot)
    nodes = None
    if settings.RELAY_NODE_NAME:  # scale-out
        shot, nodes = _cluster_wide(shot)
    alive = {node.name for node in nodes if node.alive} if nodes is not None else None
    shot = _with_every_nodes_traffic(shot, rows, alive)
    return {
        "snapshot": shot,
        "rates": shot.rates,
        "rows": _rows(request, shot.live),
        "may_disconnect": may_disconnect(request),
        "nodes": nodes,  # scale-out: None on a single relay
        "this_node": settings.RELAY_NODE_NAME,
    }


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    own = _context(request, take_snapshot())
    context = {
        **admin.site.each_context(request),
        **own,
        "title": "Relay dashboard",
        "chart": traffic_svg(own["snapshot"].minutes),
        "poll_ms": POLL_MS,
        "poll_s": POLL_MS // 1000,
    }
    return render(request, "admin/tunnels/dashboard.html", context)


@require_GET
def data(request: HttpRequest) -> JsonResponse:
    context = _context(request, take_snapshot())
    shot = context["snapshot"]
    nodes = context["nodes"] or []  # scale-out
    return JsonResponse(
        {
            "tunnels": shot.tunnels,
            "sockets": shot.sockets,
            "in_flight": shot.in_flight,
            "requests_per_s": round(shot.rates.requests_per_s, 3),
            "bytes_in_per_s": round(shot.rates.bytes_in_per_s, 1),
            "bytes_out_per_s": round(shot.rates.bytes_out_per_s, 1),
            "live": [row["name"] for row in context["rows"]],
            "node": settings.RELAY_NODE_NAME or None,  # scale-out: the node answering
            "nodes": [node.as_json() for node in nodes],
            "live_nodes": {row["name"]: row["node"] for row in context["rows"] if row["node"]},
            "nodes_html": render_to_string(NODES_TEMPLATE, context, request),
            "stats_html": render_to_string(STATS_TEMPLATE, context, request),
            "chart_html": str(traffic_svg(shot.minutes)),
            # The hour's minutes, every node together: [start (Unix), requests, in, out].
            "minutes": [[minute.start, *minute.counts] for minute in shot.minutes],
            "tunnels_html": render_to_string(TUNNELS_TEMPLATE, context, request),
        }
    )


@require_POST
def disconnect(request: HttpRequest) -> HttpResponse:
    if not may_disconnect(request):
        raise PermissionDenied("Disconnecting tunnels needs the permission to change them.")
    name = request.POST.get("name", "")
    if not protocol.is_valid_subdomain(name):
        messages.error(request, f"{name!r} is not a tunnel name: {protocol.SUBDOMAIN_RULE}.")
    elif control.disconnect([name]):
        messages.success(
            request,
            f"Disconnecting {name}; it may not register again for "
            f"{settings.RELAY_DISCONNECT_COOLDOWN_S:g} s.",
        )
    else:
        messages.error(request, "There is no channel layer, so the relay cannot be told.")
    return redirect("relay-dashboard")
