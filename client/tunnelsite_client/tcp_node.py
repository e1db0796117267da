"""Which relay a TCP tunnel registers at again. On a cluster a TCP tunnel's public port is
owned by the node that registered it (relay/protocol.py, "TCP tunnels"); a reconnect through
the balancer (--host) may land on another node, which would open a new port from its own
range. So when the last answer named a node (its pool_url on another base than --host: the
relay's RELAY_NODE_URL), lt registers there first, with the tunnel's pool secret, and the
owner node reclaims the tunnel and its port; --host only when that node cannot be reached.

The registration carries the token, so a node is used only when --host's user would have
sent it there themselves: a host of --host's own domain (its host, or a name under it:
node-a.relay.example for relay.example), over https or on loopback. A relay cannot send
lt's token anywhere else by naming a pool URL; a node elsewhere means --host (a new port).
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from .connect import is_loopback
from .pool_upgrade import DEFAULT_PORTS
from .registration import Registration

NODE_GONE = "the tunnel's node is gone; registering at --host: the port changes"


def owner_node(host: str, registration: Registration | None) -> str | None:
    """The base URL of the node that owns `registration`'s TCP tunnel when it is not
    `host`'s (scheme://host[:port]); else None (one relay, or not a TCP tunnel)."""
    if registration is None or registration.tcp_port is None or not registration.pool_url:
        return None
    node = urlsplit(registration.pool_url)
    relay = urlsplit(host.rstrip("/"))
    if _address(node) == _address(relay) or not _token_may_go(node, relay):
        return None
    return f"{node.scheme}://{node.netloc.rpartition('@')[2]}"


def _token_may_go(node: SplitResult, relay: SplitResult) -> bool:
    """Whether lt may send --host's token to `node`: --host's domain, encrypted or local."""
    name = (node.hostname or "").rstrip(".")
    own = (relay.hostname or "").rstrip(".")
    if not name or not (name == own or name.endswith("." + own)):
        return False
    return node.scheme == "https" or is_loopback(name)


def _address(parts: SplitResult) -> tuple[str, int | None]:
    """A relay's host and port; a scheme's default port counts as none, so one relay whose
    pool URL is https (its public scheme) while --host says http is still the same relay."""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port == DEFAULT_PORTS.get(parts.scheme):
        port = None
    return (parts.hostname or "", port)
