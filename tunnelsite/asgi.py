"""ASGI entry point: tunnel hosts go to the relay, the bare domain to Django."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunnelsite.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from relay.routing import HostRouter  # noqa: E402

_router = HostRouter(site_http=django_application)

application = ProtocolTypeRouter({"http": _router, "websocket": _router})
