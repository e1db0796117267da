"""tunnelsite's settings with one change: the ASGI app is tests/apps/access_asgi.py, which
gives chosen tunnel names visitor rules at registration (for tests/access/, until our lt's
X-Tunnelsite-Access header is read by tunnels/access.py). Run with tests/apps on PYTHONPATH."""

from tunnelsite.settings import *  # noqa: F403

ASGI_APPLICATION = "access_asgi.application"
