"""Small synchronous ORM functions for running many relay nodes on one database.

Behind relay.records (tunnels/records.py): relay/cluster/node.py calls them on the relay's
database threads (relay/database.py), once per heartbeat (every `RELAY_HEARTBEAT_S`) or once per
registration; never per request. Times are the database's
own clock (`Now()`), so nodes whose clocks disagree still agree on who is dead.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, ExpressionWrapper, OuterRef, Subquery, Value
from django.db.models.functions import Now

from relay.face import LiveLimitReached, NodeLoad, address_key
from tunnels.models import Node, TunnelSession

NODE_GONE = "node gone"


def _older_than(seconds: float) -> ExpressionWrapper:
    return ExpressionWrapper(
        Now() - Value(timedelta(seconds=seconds)), output_field=DateTimeField()
    )


def owner_key_of(owner_id: int | None, client_ip: str) -> str:
    """The registry's owner key (tunnels/auth.py) of a session row's owner."""
    if owner_id is not None:
        return f"user:{owner_id}"
    return f"ip:{address_key(client_ip, settings.RELAY_IPV6_PREFIX)}"  # as tunnels/auth.py


def check_live_limit(owner_id: int | None, client_ip: str, limit: int, subdomain: str = "") -> None:
    """Inside the registration's transaction: count the owner's live tunnels on every node.

    A live row of the name being registered is not counted: if it is the owner's, this
    registration replaces it (a reclaim across nodes); if not, the insert fails anyway.
    On PostgreSQL an advisory lock per owner, held until the transaction ends, makes the
    count and the insert one step: two nodes registering for the same owner at the same
    moment take turns, so the limit is exact. SQLite serialises writers on its own.
    """
    key = owner_key_of(owner_id, client_ip)
    if connection.vendor == "postgresql":
        lock = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock - (1 << 63)])
    live = TunnelSession.objects.filter(is_live=True)
    if owner_id is not None:
        live = live.filter(owner_id=owner_id)
    else:
        live = live.filter(owner_id__isnull=True, client_ip=client_ip)
    if subdomain:
        live = live.exclude(subdomain=subdomain)
    if live.count() >= limit:
        raise LiveLimitReached(limit)


def heartbeat(
    name: str, advertise: str, started_at: datetime, draining: bool, load: NodeLoad
) -> None:
    """Say this node is alive, where it is, and how loaded it is."""
    fields = {
        "advertise": advertise,
        "draining": draining,
        "tunnels": load.tunnels,
        "sockets": load.sockets,
        "in_flight": load.in_flight,
        "requests": load.requests,
        "forwarded": load.forwarded,
    }
    if not Node.objects.filter(name=name).update(last_heartbeat=Now(), **fields):
        Node.objects.update_or_create(
            name=name, defaults={**fields, "started_at": started_at, "last_heartbeat": Now()}
        )


def reap_dead_nodes(me: str, expiry_s: float) -> dict[str, int]:
    """Close the live sessions of every node silent for `expiry_s`; {node: sessions closed}."""
    dead = list(
        Node.objects.filter(last_heartbeat__lt=_older_than(expiry_s))
        .exclude(name=me)
        .values_list("name", flat=True)
    )
    closed: dict[str, int] = {}
    for name in dead:
        count = TunnelSession.objects.filter(is_live=True, node=name).update(
            is_live=False, closed_at=Now(), close_reason=NODE_GONE, sockets=0
        )
        if count:
            closed[name] = count
    return closed


def directory(me: str, expiry_s: float) -> dict[str, str]:
    """{subdomain: HOST:PORT of its owner} for every live tunnel on another live node."""
    alive = Node.objects.filter(last_heartbeat__gte=_older_than(expiry_s)).exclude(name=me)
    address = Subquery(alive.filter(name=OuterRef("node")).values("advertise")[:1])
    rows = (
        TunnelSession.objects.filter(is_live=True)
        .exclude(node=me)
        .exclude(node="")
        .annotate(address=address)
        .filter(address__isnull=False)
        .values_list("subdomain", "address")
    )
    return dict(rows)


def closed_among(session_ids: list[int]) -> list[int]:
    """Which of these sessions (this node's own) someone else has marked closed."""
    if not session_ids:
        return []
    return list(
        TunnelSession.objects.filter(pk__in=session_ids, is_live=False).values_list("pk", flat=True)
    )


def live_holder(subdomain: str) -> tuple[str, str] | None:
    """(owner key, node) of the name's live session row, or None when nobody holds it."""
    row = (
        TunnelSession.objects.filter(is_live=True, subdomain=subdomain)
        .values_list("owner_id", "client_ip", "node")
        .first()
    )
    if row is None:
        return None
    owner_id, client_ip, node = row
    return owner_key_of(owner_id, client_ip), node


def mark_draining(name: str) -> None:
    Node.objects.filter(name=name).update(draining=True, last_heartbeat=Now())
