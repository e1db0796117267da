"""ASGI entry point: tunnel hosts go to the relay, the bare domain to Django."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunnelsite.settings")
django.setup(set_prefix=False)  # as get_asgi_application does, before the handler is made

from tunnelsite.loop_middleware import SiteHandler  # noqa: E402

django_application = SiteHandler()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from relay import asgi as relay_asgi  # noqa: E402

# Static files are Django's (tunnelsite.static, a middleware): only the bare domain has them.
_relay = relay_asgi.application(site_http=django_application)

application = ProtocolTypeRouter({"http": _relay, "websocket": _relay})
