"""Session rows: small synchronous ORM functions behind relay.records (tunnels/records.py).

The relay never touches the ORM per request: it opens a row on registration and applies
batches of counter updates every few seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Field
from django.utils import timezone

from relay.face import SessionUpdate
from tunnels import nodes
from tunnels.models import ApiToken, TunnelSession


def open_session(
    *,
    subdomain: str,
    client_ip: str,
    port: int,
    max_sockets: int,
    owner_id: int | None = None,
    token_id: int | None = None,
    max_live: int = 0,  # scale-out: the owner's live-tunnel limit, checked cluster-wide
    tcp_port: int | None = None,  # a TCP tunnel's public port; None: an HTTP tunnel
) -> int:
    with transaction.atomic():  # a name conflict rolls back this insert only
        if max_live:  # scale-out
            nodes.check_live_limit(owner_id, client_ip, max_live, subdomain)
        row = TunnelSession.objects.create(
            subdomain=subdomain,
            client_ip=client_ip,
            port=port,
            max_sockets=max_sockets,
            owner_id=owner_id,
            token_id=token_id,
            node=settings.RELAY_NODE_NAME,
            tcp_port=tcp_port,
        )
    return row.pk


# The counters every flush writes, and what a moved or closed row adds to them.
_COUNTERS = ("sockets", "peak_sockets", "requests", "bytes_in", "bytes_out", "last_activity")
_MOVED = (*_COUNTERS, "client_ip")
_CLOSED = (*_COUNTERS, "is_live", "closed_at", "close_reason")


def apply_updates(updates: list[SessionUpdate]) -> None:
    """One UPDATE per row, all sent with executemany in one transaction. Not bulk_update:
    its CASE WHEN per row and field made the ORM's compiling of a flush after 1,000
    registrations most of the relay's CPU while they came in (py-spy on a live relay)."""
    now = timezone.now()
    live: list[list[object]] = []
    moved: list[list[object]] = []
    closed: list[list[object]] = []
    for u in updates:
        values: list[object] = [
            0 if u.closed else u.sockets,
            u.peak_sockets,
            u.requests,
            u.bytes_in,
            u.bytes_out,
            now - timedelta(seconds=u.last_activity_age_s),
        ]
        if u.closed:
            closed.append([*values, False, now, u.close_reason[:100], u.id])
        elif u.client_ip:
            # Live rows follow their client's address (an anonymous tunnel's owner, which
            # moves with a client reclaiming it by its pool secret from a new address).
            moved.append([*values, u.client_ip, u.id])
        else:
            live.append([*values, u.id])
    with transaction.atomic():
        for names, rows in ((_COUNTERS, live), (_MOVED, moved), (_CLOSED, closed)):
            if rows:
                _update_by_pk(names, rows)


def _update_by_pk(names: tuple[str, ...], rows: list[list[object]]) -> None:
    """UPDATE the session rows: each row is the values of `names`, then its primary key;
    each value prepared for the database as the ORM prepares it for that field."""
    connection = connections[TunnelSession.objects.db]
    quote = connection.ops.quote_name
    meta = TunnelSession._meta
    fields = [cast("Field[Any, Any]", meta.get_field(name)) for name in names]
    assignments = ", ".join(f"{quote(f.column or f.attname)} = %s" for f in fields)
    key = quote(meta.pk.column or meta.pk.attname) if meta.pk is not None else "id"
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {key} = %s"
    prepare = [f.get_db_prep_save for f in fields]
    params = [
        [*(prep(value, connection) for prep, value in zip(prepare, row, strict=False)), row[-1]]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def close_stale_sessions(started_at: datetime, reason: str = "relay restarted") -> int:
    """Mark sessions left live by a relay that stopped without closing them (with a node
    name: only that node's own sessions; the other nodes' are theirs). Only rows opened
    before `started_at`: the relay runs this while it already takes registrations, and a
    session it opened itself is not stale."""
    live = TunnelSession.objects.filter(is_live=True, opened_at__lt=started_at)
    if settings.RELAY_NODE_NAME:  # scale-out
        live = live.filter(node=settings.RELAY_NODE_NAME)
    return live.update(is_live=False, closed_at=timezone.now(), close_reason=reason, sockets=0)


def unusable_tokens(token_ids: set[int]) -> set[int]:
    """Which of these tokens may no longer hold tunnels: revoked, expired, or their user
    deactivated (tokens are checked at registration; this catches what changed since)."""
    if not token_ids:
        return set()
    usable = ApiToken.objects.usable().filter(pk__in=token_ids, user__is_active=True)
    return token_ids - set(usable.values_list("pk", flat=True))


def prune_closed_sessions(retention_days: int, batch: int) -> int:
    """Delete up to `batch` closed session rows closed more than `retention_days` ago,
    oldest first (registrations must not grow the database for ever). Live rows
    and recent history stay. Returns how many it deleted; a full batch means call again."""
    if retention_days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=retention_days)
    ids = list(
        TunnelSession.objects.filter(is_live=False, closed_at__lt=cutoff)
        .order_by("closed_at")
        .values_list("pk", flat=True)[:batch]
    )
    if not ids:
        return 0
    deleted, _ = TunnelSession.objects.filter(pk__in=ids, is_live=False).delete()
    return deleted
