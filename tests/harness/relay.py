"""The processes of an end-to-end test: the relay, the local app and the npm client."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import log_capture
from harness.http import Answer, Visitor
from harness.processes import PYTHON, ROOT, Process, ProcessGroup
from harness.waiting import IO_TIMEOUT_S, wait_until

LOCAL_APP = ROOT / "tests" / "apps" / "local_app.py"
NPM_LT = ROOT / "tests" / ".npm" / "node_modules" / ".bin" / "lt"

# Settings for every relay the tests start, unless a test overrides them.
# A relay on a free loopback port, tunnels at <name>.localhost (cluster nodes add a name).
RELAY_COMMAND = [
    PYTHON,
    *("manage.py", "runrelay", "--port", "0", "--bind", "127.0.0.1", "--domain", "localhost"),
]
# Only what no test is about: the defaults are what tests check. DEBUG=true is the default,
# pinned so an exported DEBUG=false does not change every relay. A test (or fixture) that
# needs another value passes it to the launcher, with its reason.
RELAY_TEST_ENV = {
    "DEBUG": "true",
}

# Every npm client a test starts registers from 127.0.0.1 (it cannot pick its source
# address), so a relay that serves many such tests at once, like the shared `relay`, would
# meet the anonymous cap of 5 live tunnels per address and the per-owner registration rate;
# relays that need it pass this (tests/e2e/test_registrations.py tests both defaults).
NO_LIVE_TUNNEL_CAP = {
    "RELAY_DEFAULT_PLAN_MAX_LIVE_TUNNELS": "0",
    "RELAY_REGISTRATIONS_PER_MINUTE": "0",
}


@dataclass
class Relay:
    process: Process
    port: int
    env: dict[str, str]
    domain: str = "localhost"

    def host(self, name: str) -> str:
        """The Host header visitors use for the tunnel `name`."""
        return f"{name}.{self.domain}:{self.port}"

    def visitor(self, name: str | None = None, source: str | None = None) -> Visitor:
        host = self.host(name) if name else f"127.0.0.1:{self.port}"
        return Visitor(self.port, host, source)

    def request(
        self,
        method: str,
        target: str,
        *,
        name: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        source: str | None = None,
    ) -> Answer:
        """One request on a fresh connection; `name` picks the tunnel (else the site)."""
        with self.visitor(name, source) as visitor:
            return visitor.request(method, target, headers, body)

    def get(self, target: str, **kw: Any) -> Answer:
        return self.request("GET", target, **kw)

    def register(self, name: str | None = None, source: str | None = None) -> Answer:
        """localtunnel's registration: `GET /?new` or `GET /<name>`."""
        return self.get(f"/{name}" if name else "/?new", source=source)

    def status(self) -> dict[str, Any]:
        answer = self.get("/api/status")
        assert answer.status == 200, answer
        return answer.json()

    def sockets(self, name: str) -> int | None:
        """The tunnel's connected pool sockets, or None when the relay does not know it."""
        answer = self.get(f"/api/tunnels/{name}/status")
        if answer.status == 404:
            return None
        assert answer.status == 200, answer
        return answer.json()["connected_sockets"]

    def wait_for_sockets(self, name: str, count: int, timeout: float = IO_TIMEOUT_S) -> None:
        wait_until(
            lambda: self.sockets(name) == count,
            timeout,
            f"tunnel {name} to have {count} pool sockets",
        )


class RelayLauncher:
    def __init__(self, group: ProcessGroup, workdir: Path, template_db: Path) -> None:
        self.group = group
        self.workdir = workdir
        self.template_db = template_db

    def __call__(self, *flags: str, **overrides: Any) -> Relay:
        """A relay with `overrides` in its environment and `flags` after RELAY_COMMAND's
        (a later `--bind ::` wins: a dual-stack relay, for IPv6 visitors from ::1)."""
        db = self.workdir / f"relay-{uuid.uuid4().hex[:8]}.sqlite3"
        shutil.copyfile(self.template_db, db)
        env = {**os.environ, **RELAY_TEST_ENV}
        env.update({key: str(value) for key, value in overrides.items() if value is not None})
        for key in [key for key, value in overrides.items() if value is None]:
            env.pop(key, None)  # `relay_factory(NAME=None)`: the relay's default for NAME
        env["DATABASE_URL"] = f"sqlite:///{db}"
        env["PYTHONUNBUFFERED"] = "1"
        process = self.group.start(
            [*RELAY_COMMAND, *flags],
            env,
            name="relay",
        )
        match = process.wait_for_line(
            r"tunnelsite relay listening on https?://(?:127\.0\.0\.1|\[::\]):(\d+)"
        )
        return Relay(process=process, port=int(match.group(1)), env=env)


@dataclass
class LocalApp:
    process: Process
    port: int

    def get(self, target: str) -> Answer:
        """A request straight to the app, bypassing the relay."""
        with Visitor(self.port, f"127.0.0.1:{self.port}") as visitor:
            return visitor.request("GET", target)

    def release(self, key: str) -> None:
        assert self.get(f"/release?key={key}").status == 200

    def waiting(self, key: str) -> int:
        return int(self.get(f"/waiting?key={key}").body)

    def wait_for_waiting(self, key: str, count: int, timeout: float = IO_TIMEOUT_S) -> None:
        wait_until(
            lambda: self.waiting(key) == count, timeout, f"{count} requests waiting on {key}"
        )


@dataclass
class LtClient:
    process: Process
    url: str
    name: str
    relay: Relay

    def stop(self) -> int | None:
        return self.process.stop()


class LtLauncher:
    def __init__(self, group: ProcessGroup) -> None:
        self.group = group

    def start(
        self, relay: Relay, app_port: int, subdomain: str | None = None, extra: list[str] = ()
    ) -> Process:
        if not NPM_LT.exists():
            pytest.fail("the npm client is not installed; run `make test` once")
        args = [str(NPM_LT), "--port", str(app_port), "--host", f"http://localhost:{relay.port}"]
        if subdomain:
            args += ["--subdomain", subdomain]
        return self.group.start([*args, *extra], {**os.environ}, name="lt")

    def __call__(
        self,
        relay: Relay,
        app_port: int,
        subdomain: str | None = None,
        wait_sockets: bool = True,
    ) -> LtClient:
        """Start `lt`, wait for `your url is:`, and (by default) for all its pool sockets."""
        process = self.start(relay, app_port, subdomain)
        url = process.wait_for_line(r"your url is: (\S+)").group(1)
        name = re.match(r"https?://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
        if wait_sockets:
            relay.wait_for_sockets(name, int(relay.env.get("RELAY_MAX_SOCKETS", "10")))
        return LtClient(process, url, name, relay)


_ISSUE_TOKEN = """
from django.contrib.auth import get_user_model
from tunnels.models import ApiToken
user = get_user_model().objects.create_user({username!r})
print(ApiToken.issue(user, name={name!r})[1])
"""


def issue_token(relay: Relay, username: str, name: str) -> str:
    """A new user's API token, written into the relay's own database by `manage.py shell`."""
    code = _ISSUE_TOKEN.format(username=username, name=name)
    token = manage(relay, "shell", "-c", code).strip().splitlines()[-1]
    log_capture.remember(token, f"the API token of {username!r} (harness.relay.issue_token)")
    return token


def manage(relay: Relay, *args: str) -> str:
    """Run a management command on the relay's database (and channel layer); its stdout."""
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def relay_env(db: Path, **overrides: str) -> dict[str, str]:
    """The environment of a relay on the defaults (no RELAY_* of the test runner)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update({"DATABASE_URL": f"sqlite:///{db}", "DEBUG": "true", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def free_port() -> int:
    """A port free right now, for tests of `runrelay --port N` itself (others use port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
