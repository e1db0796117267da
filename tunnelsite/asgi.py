"""ASGI entry point: tunnel hosts go to the relay, the bare domain to Django."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunnelsite.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from relay import asgi as relay_asgi  # noqa: E402

# Static files are Django's (tunnelsite.static, a middleware): only the bare domain has them.
_relay = relay_asgi.application(site_http=django_application)

application = ProtocolTypeRouter({"http": _relay, "websocket": _relay})
