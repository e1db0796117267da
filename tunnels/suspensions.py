"""Operators' suspensions of tunnel names, tokens and users (the `Suspension` model): what the
relay is told, and what it reads back at start."""

from __future__ import annotations

from tunnels.models import Suspension


def suspended_names() -> dict[str, str]:
    """Every name under an active suspension, with its reason (the newest when several)."""
    names: dict[str, str] = {}
    for suspension in Suspension.objects.active().order_by("created"):
        for name in suspension.names or ():
            if isinstance(name, str):
                names[name] = suspension.reason
    return names
