"""Telling the relay to close tunnels, from the admin or a command, over the channel layer.

The relay (relay/cluster/control.py) listens on the `relay-control` group. With the in-memory layer
only the same process hears it, which is the runrelay process serving the admin; with Redis
every relay does.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from relay.face import CONTROL_GROUP, close_message
from tunnels.models import ApiToken, TunnelSession


def close_tunnels(names: list[str], reason: str, token_ids: list[int] | None = None) -> bool:
    """Ask every relay to close these tunnels (and any opened with these tokens)."""
    layer = get_channel_layer()
    if layer is None or not (names or token_ids):
        return False
    async_to_sync(layer.group_send)(CONTROL_GROUP, close_message(names, token_ids or [], reason))
    return True


def revoke_tokens(tokens: list[ApiToken], reason: str = "token revoked") -> int:
    """Revoke tokens and close their live tunnels; the number newly revoked."""
    revoked = sum(1 for token in tokens if token.revoke())
    ids = [token.pk for token in tokens]
    names = list(
        TunnelSession.objects.filter(token_id__in=ids, is_live=True).values_list(
            "subdomain", flat=True
        )
    )
    close_tunnels(names, reason, token_ids=ids)
    return revoked
