"""ASGI entry point: tunnel hosts go to the relay, the bare domain to Django."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunnelsite.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from relay.routing import HostRouter  # noqa: E402

# Static files are Django's (tunnelsite.static, a middleware): only the bare domain has them.
_router = HostRouter(site_http=django_application)

from django.conf import settings  # noqa: E402

if settings.RELAY_NODE_NAME:  # scale-out: hop markers and /healthz, only on a named node
    from relay.cluster import forward_api, health  # noqa: E402
    from relay.hop import ClusterGate  # noqa: E402

    _router = ClusterGate(_router, health, forward_api)  # type: ignore[assignment]

application = ProtocolTypeRouter({"http": _router, "websocket": _router})
