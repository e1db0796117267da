"""What the admin dashboard shows of a cluster (scale-out: RELAY_NODE_NAME set).

One node's memory only knows its own tunnels, so on a named node the dashboard reads the
database instead: every `Node` row (heartbeat age, draining, load as of its last heartbeat)
and every live `TunnelSession` row, whichever node owns it. Two queries per poll of the page,
never anything on the byte path. Counters of the rows lag by up to RELAY_FLUSH_S, the node
figures by up to RELAY_HEARTBEAT_S.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import DurationField, ExpressionWrapper, F
from django.db.models.functions import Now

from relay.face import Counts, LiveTunnel
from tunnels.models import Node, TunnelSession


@dataclass(frozen=True)
class NodeRow:
    name: str
    address: str
    alive: bool  # heard from within RELAY_NODE_EXPIRY_S
    heartbeat_age_s: float
    draining: bool
    tunnels: int
    sockets: int
    in_flight: int
    requests: int
    forwarded: int

    @property
    def state(self) -> str:
        if not self.alive:
            return "dead"
        return "draining" if self.draining else "serving"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "state": self.state,
            "alive": self.alive,
            "heartbeat_age_s": round(self.heartbeat_age_s, 1),
            "draining": self.draining,
            "tunnels": self.tunnels,
            "sockets": self.sockets,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "forwarded": self.forwarded,
        }


def node_rows(expiry_s: float) -> list[NodeRow]:
    """Every node that ever wrote a heartbeat, by name; the age by the database's clock."""
    age = ExpressionWrapper(Now() - F("last_heartbeat"), output_field=DurationField())
    rows = []
    for node in Node.objects.annotate(age=age).order_by("name"):
        seconds = max(0.0, node.age.total_seconds())
        rows.append(
            NodeRow(
                name=node.name,
                address=node.advertise,
                alive=seconds < expiry_s,
                heartbeat_age_s=seconds,
                draining=node.draining,
                tunnels=node.tunnels,
                sockets=node.sockets,
                in_flight=node.in_flight,
                requests=node.requests,
                forwarded=node.forwarded,
            )
        )
    return rows


def live_tunnels() -> list[LiveTunnel]:
    """Every live session row of every node, by name."""
    rows = TunnelSession.objects.filter(is_live=True).order_by("subdomain")
    return [
        LiveTunnel(
            name=row.subdomain,
            user_id=row.owner_id,
            token_id=row.token_id,
            client_ip=row.client_ip,
            sockets=row.sockets,
            max_sockets=row.max_sockets,
            counts=Counts(row.requests, row.bytes_in, row.bytes_out),
            opened_at=row.opened_at.timestamp(),
            node=row.node,
            tcp_port=row.tcp_port or 0,  # its connections open now: only its node knows
        )
        for row in rows
    ]
