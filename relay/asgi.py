"""The relay's ASGI application in front of the site: tunnelsite/asgi.py serves it.

Apart from relay.face on purpose: building the application imports the byte path (edge
routing, proxies, WebSocket bridge, cluster forwarding), which the site's other processes
(`migrate`, `createtoken`, the admin's views) never need. Only tunnelsite/asgi.py may import
this module (import-linter's `protected` contract in pyproject.toml).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from relay.asgi_types import ASGIApp
from relay.cluster.forward import forward_api, health
from relay.cluster.hop import ClusterGate
from relay.edge.routing import HostRouter
from relay.pool import captures
from relay.proxy.replay import replay
from relay.site_call import ending_on_disconnect

__all__ = ["application"]


def application(site_http: Any) -> ASGIApp:
    """The relay's ASGI application in front of the site (Django's ASGIHandler, typed with
    dict scopes: Any at this boundary): tunnel hosts go to the
    tunnel, the bare domain to `site_http`; on a named node (RELAY_NODE_NAME, scale-out)
    behind the gate that checks hop markers and answers /healthz. Installs the inspector's
    replayer (relay/proxy/replay.py), which the pool layer may not import. Django is called
    through relay/site_call.py, so a view whose caller left is ended, not left running."""
    captures.install_replayer(replay)
    router: ASGIApp = HostRouter(site_http=ending_on_disconnect(site_http))
    if settings.RELAY_NODE_NAME:
        router = ClusterGate(router, health, forward_api)
    return router
