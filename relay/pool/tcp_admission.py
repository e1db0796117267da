"""Whether a visitor connection to a TCP tunnel's port may come in: in memory, no logging.

A TCP client cannot be shown a page or asked for a password, so of a tunnel's visitor rules
(relay/pool/access.py) only its CIDR allow and deny lists apply; the registration refuses the
others for TCP tunnels, and a tunnel that carries one anyway refuses every visitor (fail
closed). The plan quota counts each connection as a request (relay/pool/quota.py).
"""

from __future__ import annotations

from relay.pool.access import Access
from relay.pool.quota import Metered, Quota


def cannot_apply(access: Access) -> bool:
    """Rules a TCP visitor cannot be asked to satisfy: a password, a team pass, a warning."""
    return bool(access.basic) or access.team or access.warning


def admits(
    access: Access | None, quota: Quota | None, tunnel: Metered, ip: str, now: float
) -> bool:
    """May a visitor from `ip` (relay.headers.normal_ip's spelling) open a connection?
    `tunnel` is the quota's `Metered` (relay/pool/tunnel.py's Tunnel)."""
    if access is not None:
        if cannot_apply(access):
            return False
        if access.cidr and not access.admits(ip):
            return False
    return quota is None or quota.admit_connection(tunnel, now)
