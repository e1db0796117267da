"""Operators' suspensions of tunnel names, tokens and users (the `Suspension` model): the rows,
what the relays are told (tunnels/control.py), and what a relay reads back at start.

A suspension closes the live tunnels it covers, refuses their registrations with its reason
(tunnels/auth.py reads the rows, so it holds across restarts and on every node) and shows
the visitors of its `names` a page with the reason (each relay keeps those names in memory:
relay/pool/sanctions.py). Lifting one tells the relays which names are free again: only
those no other active suspension still covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from tunnels import control
from tunnels.models import ApiToken, Suspension, TunnelSession


def suspended_names() -> dict[str, str]:
    """Every name under an active suspension, with its reason (the newest when several)."""
    names: dict[str, str] = {}
    for suspension in Suspension.objects.active().order_by("created"):
        for name in suspension.names or ():
            if isinstance(name, str):
                names[name] = suspension.reason
    return names


def suspended_ids() -> tuple[dict[int, str], dict[int, str]]:
    """The token ids and user ids under an active suspension, with the newest reason."""
    tokens: dict[int, str] = {}
    users: dict[int, str] = {}
    for suspension in Suspension.objects.active().exclude(kind=Suspension.NAME).order_by("created"):
        if suspension.token_id is not None:
            tokens[suspension.token_id] = suspension.reason
        if suspension.user_id is not None:
            users[suspension.user_id] = suspension.reason
    return tokens, users


def _live_names(**which: Any) -> list[str]:
    return sorted(
        set(TunnelSession.objects.filter(is_live=True, **which).values_list("subdomain", flat=True))
    )


def apply(row: Suspension) -> Suspension:
    """Save a new suspension (its kind and target set) with the names it covers now, and
    tell every relay: the covered live tunnels close, the names show the suspension page."""
    if row.kind == Suspension.NAME:
        row.names = [row.name]
    elif row.kind == Suspension.TOKEN:
        row.names = _live_names(token_id=row.token_id)
    else:
        row.names = _live_names(owner_id=row.user_id)
    row.save()
    control.suspend(
        list(row.names),
        [row.token_id] if row.token_id is not None else [],
        [row.user_id] if row.user_id is not None else [],
        row.reason,
    )
    return row


def suspend_names(names: Iterable[str], reason: str, by: Any = None) -> list[Suspension]:
    """Suspend tunnel names, whoever registers them."""
    return [
        apply(Suspension(kind=Suspension.NAME, name=name, reason=reason, created_by=by))
        for name in sorted(set(names))
    ]


def suspend_tokens(tokens: Iterable[ApiToken], reason: str, by: Any = None) -> list[Suspension]:
    """Suspend API tokens: their registrations are refused; the names of their live tunnels
    now show the suspension page."""
    return [
        apply(Suspension(kind=Suspension.TOKEN, token=token, reason=reason, created_by=by))
        for token in tokens
    ]


def suspend_users(users: Iterable[Any], reason: str, by: Any = None) -> list[Suspension]:
    """Suspend users: registrations with any of their tokens are refused; the names of
    their live tunnels now show the suspension page."""
    return [
        apply(Suspension(kind=Suspension.USER, user=user, reason=reason, created_by=by))
        for user in users
    ]


def lift(rows: Iterable[Suspension], by: Any = None) -> list[Suspension]:
    """Lift active suspensions; the relays free the names no other one still covers."""
    lifted = [row for row in rows if row.active]
    now = timezone.now()
    for row in lifted:
        row.lifted_at = now
        row.lifted_by = by
        row.save(update_fields=["lifted_at", "lifted_by"])
    still = suspended_names()
    tokens, users = suspended_ids()
    control.lift(
        sorted({name for row in lifted for name in row.names if name not in still}),
        sorted({r.token_id for r in lifted if r.token_id is not None and r.token_id not in tokens}),
        sorted({r.user_id for r in lifted if r.user_id is not None and r.user_id not in users}),
    )
    return lifted
