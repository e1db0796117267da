"""TCP tunnels end to end (tests/tcp): the bulk TCP app, a free range for RELAY_TCP_PORTS,
users with tokens and reserved ports in a relay's database, and `lt tcp` as a process.

The app is bench/tcp_app.py (`make bench` measures with it too); a visitor speaks to it with
bench/tcp_transfer.py, through a tunnel's tcp://host:port or directly.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import client_env

# RELAY_TCP_PORTS for a test relay: the same free range make bench picks.
from bench.tcp_scenario import free_port_range as free_port_range
from bench.tcp_scenario import port_free
from harness import log_capture
from harness.processes import PYTHON, ROOT, Process, ProcessGroup
from harness.relay import Relay

START_S = 20.0
URL = re.compile(r"your url is: (tcp://([^\s:/]+):(\d+))")


def port_is_held(port: int) -> bool:
    """Does a listener (the relay's) hold the port? Binding it ourselves says."""
    return not port_free(port)


def start_tcp_app(group: ProcessGroup) -> int:
    """bench/tcp_app.py on a free port (SEND, SINK, ECHO, STATS); its port."""
    process = group.start([PYTHON, "-u", "-m", "bench.tcp_app"], client_env(), name="tcp app")
    return int(process.wait_for_line(r"tcp app listening on 127\.0\.0\.1:(\d+)").group(1))


# --- the relay's database ----------------------------------------------------------------------
_USERS = """
from django.contrib.auth import get_user_model
from tunnels.models import ApiToken, ReservedTcpPort
User = get_user_model()
for username, reserved in {users!r}:
    user = User.objects.create_user(username)
    for port in reserved:
        ReservedTcpPort.objects.create(user=user, port=port)
    print("TOKEN", username, ApiToken.issue(user, name="tcp e2e")[1])
"""


def make_users(env: dict[str, str], users: dict[str, list[int]]) -> dict[str, str]:
    """Users (with the TCP ports reserved for each) in the database `env` names, in one
    `manage.py shell`; their API tokens by name."""
    code = _USERS.format(users=list(users.items()))
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"making users failed:\n{done.stdout}\n{done.stderr}"
    tokens = dict(
        line.split()[1:] for line in done.stdout.splitlines() if line.startswith("TOKEN ")
    )
    assert set(tokens) == set(users), done.stdout
    for username, token in tokens.items():
        log_capture.remember(token, f"the API token of {username!r} (harness.tcp_tunnels)")
    return tokens


_PLAN_USER = """
from django.contrib.auth import get_user_model
from tunnels.models import Account, ApiToken, Plan
user = get_user_model().objects.create_user({username!r})
plan = Plan.objects.create(name={username!r} + " plan", **{fields!r})
Account.objects.create(user=user, plan=plan)
print("TOKEN", ApiToken.issue(user, name="tcp e2e")[1])
"""


def make_plan_user(env: dict[str, str], username: str, **fields: object) -> str:
    """A user on a plan of its own (`fields` of tunnels.models.Plan, the rest their
    defaults) in the database `env` names; the user's API token."""
    code = _PLAN_USER.format(username=username, fields=fields)
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"making {username} failed:\n{done.stdout}\n{done.stderr}"
    (token,) = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("TOKEN ")]
    log_capture.remember(token, f"the API token of {username!r} (harness.tcp_tunnels)")
    return token


def _live_row(relay_env: dict[str, str], port: int, columns: str) -> tuple[Any, ...] | None:
    path = relay_env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        row: tuple[Any, ...] | None = db.execute(
            # The newest: a closed tunnel's row says so at the relay's next counter flush
            # (RELAY_FLUSH_S), and its port may have gone to a new tunnel meanwhile.
            f"SELECT {columns} FROM tunnels_tunnel WHERE tcp_port = ? AND is_live ORDER BY id DESC",
            (port,),
        ).fetchone()
    return row


def session_counts(relay: Relay, port: int) -> tuple[int, int, int] | None:
    """(requests, bytes_in, bytes_out) of the live session row of the TCP tunnel on `port`,
    read from the relay's SQLite file as the admin and the account page read it."""
    row = _live_row(relay.env, port, "requests, bytes_in, bytes_out")
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def tunnel_name(relay: Relay, port: int) -> str:
    """The name (subdomain) the relay gave the live TCP tunnel on `port`: lt tcp prints
    only its tcp:// address."""
    row = _live_row(relay.env, port, "subdomain")
    assert row is not None, f"no live TCP tunnel on port {port}"
    return str(row[0])


# --- `lt tcp` -------------------------------------------------------------------------------
@dataclass
class LtTcp:
    process: Process
    url: str  # tcp://host:port, as printed
    host: str
    port: int


class LtTcpLauncher:
    """Our `lt tcp` against a relay, each with its own config directory (no saved login)."""

    def __init__(self, group: ProcessGroup, config_dir: Path) -> None:
        self.group = group
        self.config_dir = config_dir

    def start(self, host: str, app_port: int, *extra: str) -> Process:
        """`lt tcp --port APP --host HOST EXTRA...`, not waited for."""
        environ = client_env(LT_CONFIG_DIR=str(self.config_dir), PYTHONUNBUFFERED="1")
        args = [
            PYTHON,
            "-m",
            "tunnelsite_client.cli",
            "tcp",
            "--port",
            str(app_port),
            "--host",
            host,
        ]
        return self.group.start([*args, *extra], environ, name="lt tcp")

    def __call__(self, host: str, app_port: int, *extra: str) -> LtTcp:
        """`lt tcp`, once it printed `your url is: tcp://host:port`."""
        process = self.start(host, app_port, *extra)
        match = process.wait_for_line(URL.pattern, START_S)
        return LtTcp(process, match.group(1), match.group(2), int(match.group(3)))


def run_refused(host: str, app_port: int, *extra: str, config_dir: Path) -> tuple[int, str]:
    """`lt tcp` that the relay refuses: its exit code and what it printed (it must exit)."""
    environ = client_env(LT_CONFIG_DIR=str(config_dir), PYTHONUNBUFFERED="1")
    args = [PYTHON, "-m", "tunnelsite_client.cli", "tcp", "--port", str(app_port), "--host", host]
    done = subprocess.run(
        [*args, *extra],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=START_S,
    )
    return done.returncode, done.stdout + done.stderr
