"""Account usage in the database (tunnels.models.UsageWindow), for relays without Redis: the
relay's batches (relay/pool/usage.py, through relay.records) add to one row per account and
window and read the totals back; its first tunnel's registration reads them at start, so a
restart keeps counting. Additions are `F()` updates, or an insert when the row is new (a
savepoint catches the insert another node made first), the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from relay.face import UsageDelta
from tunnels.models import UsageWindow

Key = tuple[str, str, int]


def _at(start: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(start, tz=datetime.UTC)


def _merged(deltas: list[UsageDelta]) -> dict[Key, tuple[int, int]]:
    merged: dict[Key, tuple[int, int]] = {}
    for delta in deltas:
        key = (delta.owner, delta.window, delta.start)
        requests, size = merged.get(key, (0, 0))
        merged[key] = (requests + delta.requests, size + delta.bytes)
    return merged


def _add(key: Key, requests: int, size: int) -> None:
    owner, window, start = key
    rows = UsageWindow.objects.filter(owner=owner, window=window, start=_at(start))
    if rows.update(requests=F("requests") + requests, bytes=F("bytes") + size):
        return
    try:
        with transaction.atomic():
            UsageWindow.objects.create(
                owner=owner, window=window, start=_at(start), requests=requests, bytes=size
            )
    except IntegrityError:  # another node inserted it since the update
        rows.update(requests=F("requests") + requests, bytes=F("bytes") + size)


def add_usage(deltas: list[UsageDelta]) -> dict[Key, tuple[int, int]]:
    """Add each delta to its window (one transaction; zero deltas only read) and return every
    window's totals after, all nodes together."""
    merged = _merged(deltas)
    if not merged:
        return {}
    with transaction.atomic():
        for key, (requests, size) in merged.items():
            if requests or size:
                _add(key, requests, size)
        rows = UsageWindow.objects.filter(
            owner__in={key[0] for key in merged},
            start__in={_at(key[2]) for key in merged},
        ).values_list("owner", "window", "start", "requests", "bytes")
        found = {
            (owner, window, int(start.timestamp())): (requests, size)
            for owner, window, start, requests, size in rows
        }
    return {key: found.get(key, (0, 0)) for key in merged}


def usage_of(owner: str, minute: int, day: int) -> tuple[int, int]:
    """The account's requests in the minute starting at `minute` and bytes in the day
    starting at `day` (Unix times), all nodes."""
    requests = (
        UsageWindow.objects.filter(owner=owner, window=UsageWindow.MINUTE, start=_at(minute))
        .values_list("requests", flat=True)
        .first()
    )
    size = (
        UsageWindow.objects.filter(owner=owner, window=UsageWindow.DAY, start=_at(day))
        .values_list("bytes", flat=True)
        .first()
    )
    return requests or 0, size or 0


def day_usage(owner: str, day: int) -> tuple[int, int]:
    """The account's requests and bytes in the day starting at `day`, as of the last batch
    (the account page)."""
    row = (
        UsageWindow.objects.filter(owner=owner, window=UsageWindow.DAY, start=_at(day))
        .values_list("requests", "bytes")
        .first()
    )
    return (row[0], row[1]) if row is not None else (0, 0)


def prune_usage(before: int) -> int:
    """Delete the windows that started before `before` (Unix time); how many."""
    deleted, _ = UsageWindow.objects.filter(start__lt=_at(before)).delete()
    return deleted
