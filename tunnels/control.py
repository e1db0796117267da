"""Telling the relay to close tunnels, from the admin or a command, over the channel layer.

The relay (relay/cluster/control.py) listens on the `relay-control` group. With the in-memory layer
only the same process hears it, which is the runrelay process serving the admin; with Redis
every relay does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from relay.face import CONTROL_GROUP, close_message, lift_message
from tunnels import actor
from tunnels.auth import anonymous_owner, owner_key
from tunnels.models import ApiToken, TunnelSession

DISCONNECTED = "disconnected by the operator"

logger = logging.getLogger(__name__)


def _logged(action: str, delivered: bool, reason: str = "", **targets: Sequence[int | str]) -> bool:
    """One `operator_action` line (docs/logs.md) for what the operator decided; `delivered`."""
    by = actor.current()
    fields: dict[str, object] = {"event": "operator_action", "action": action, "by": by}
    fields.update({key: list(value) for key, value in targets.items() if value})
    fields["reason"] = reason
    fields["delivered"] = delivered
    said = ", ".join(f"{key} {list(value)}" for key, value in targets.items() if value)
    heard = "" if delivered else " (no relay could be told: no channel layer)"
    logger.info(
        "operator %s: %s %s: %s%s", by, action, said or "-", reason or "-", heard, extra=fields
    )
    return delivered


def reachable() -> bool:
    """Whether relays can be told anything: there is a channel layer."""
    return get_channel_layer() is not None


def _send(message: dict[str, object]) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    async_to_sync(layer.group_send)(CONTROL_GROUP, message)
    return True


def close_tunnels(names: list[str], reason: str, token_ids: list[int] | None = None) -> bool:
    """Ask every relay to close these tunnels (and any opened with these tokens)."""
    if not (names or token_ids):
        return False
    return _send(close_message(names, token_ids or [], reason))


def disconnect(names: list[str], reason: str = DISCONNECTED) -> bool:
    """The operator's Disconnect: close these tunnels on every relay, and refuse their names,
    and their owners' new tunnels, for RELAY_DISCONNECT_COOLDOWN_S (the clients would
    otherwise register again at once). False when no relay can be told."""
    if not names:
        return False
    owners = {
        session.subdomain: owner_key(session.owner_id)
        if session.owner_id is not None
        else anonymous_owner(session.client_ip)
        for session in TunnelSession.objects.filter(subdomain__in=names, is_live=True)
    }
    sent = _send(
        close_message(
            names, [], reason, cooldown_s=settings.RELAY_DISCONNECT_COOLDOWN_S, owners=owners
        )
    )
    return _logged("disconnect", sent, reason, tunnels=names)


def suspend(names: list[str], token_ids: list[int], user_ids: list[int], reason: str) -> bool:
    """Close the tunnels with these names, tokens and users on every relay; their visitors
    see the suspension page with `reason` (tunnels/suspensions.py writes the rows)."""
    sent = _send(close_message(names, token_ids, reason, user_ids=user_ids, suspend=True))
    return _logged("suspend", sent, reason, tunnels=names, tokens=token_ids, users=user_ids)


def close_users(user_ids: list[int], reason: str) -> bool:
    """Close these users' tunnels on every relay (a deactivated account: no cool-down, no
    suspension page; their tokens are refused by tunnels/auth.py from now on)."""
    if not user_ids:
        return False
    sent = _send(close_message([], [], reason, user_ids=user_ids))
    return _logged("close_users", sent, reason, users=user_ids)


def lift(names: list[str], token_ids: Sequence[int] = (), user_ids: Sequence[int] = ()) -> bool:
    """Tell every relay these names, tokens and users are no longer suspended."""
    if not (names or token_ids or user_ids):
        return False
    sent = _send(lift_message(names, list(token_ids), list(user_ids)))
    return _logged("lift", sent, tunnels=names, tokens=token_ids, users=user_ids)


def revoke_tokens(tokens: list[ApiToken], reason: str = "token revoked") -> int:
    """Revoke tokens and close their live tunnels; the number newly revoked."""
    revoked = sum(1 for token in tokens if token.revoke())
    ids = [token.pk for token in tokens]
    names = list(
        TunnelSession.objects.filter(token_id__in=ids, is_live=True).values_list(
            "subdomain", flat=True
        )
    )
    sent = close_tunnels(names, reason, token_ids=ids)
    _logged("revoke_tokens", sent, reason, tokens=ids, tunnels=names)
    return revoked
