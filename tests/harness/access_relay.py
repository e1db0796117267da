"""A relay whose chosen tunnel names get visitor rules at registration (tests/access/), and
what a browser sends, for the warning page and the team-only sign-in."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from typing import Any

from harness.processes import PYTHON, ROOT
from harness.relay import Relay, RelayLauncher
from harness.waiting import IO_TIMEOUT_S

# A top-level navigation, as Chromium sends it.
BROWSER = [
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Site", "none"),
]


def rules_env(rules: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The environment that makes a relay (or cluster node) give each name in `rules` its
    rules (see tests/apps/access_asgi.py for their shape)."""
    path = [str(ROOT), str(ROOT / "tests" / "apps"), os.environ.get("PYTHONPATH", "")]
    return {
        "DJANGO_SETTINGS_MODULE": "access_settings",
        "PYTHONPATH": os.pathsep.join(path),
        "TEST_VISITOR_RULES": json.dumps(rules),
    }


def access_relay(launcher: RelayLauncher, rules: dict[str, dict[str, Any]], **env: Any) -> Relay:
    """A relay (`launcher`'s, with `env`) giving each name in `rules` its rules."""
    return launcher(**rules_env(rules), **env)


def upgrade_status(relay: Relay, name: str, headers: list[tuple[str, str]] = ()) -> int:
    """The status a WebSocket handshake to tunnel `name`'s /ws gets (101: upgraded)."""
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {relay.host(name)}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{n}: {v}" for n, v in headers),
    ]
    with socket.create_connection(("127.0.0.1", relay.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def relay_shell(relay: Relay, code: str) -> list[str]:
    """`manage.py shell -c code` on the relay's own database; the lines it printed."""
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()


def staff_user(relay: Relay, username: str) -> int:
    """A staff user in the relay's own database (a team pass's holder the relay's re-check,
    Records.team_user, finds allowed into any team-only tunnel, an anonymous one's too)."""
    code = (
        "from django.contrib.auth import get_user_model\n"
        f"user = get_user_model().objects.create_user({username!r}, is_staff=True)\n"
        "print(user.pk)"
    )
    return int(relay_shell(relay, code)[-1])
