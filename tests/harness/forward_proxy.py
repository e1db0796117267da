"""A real forward proxy for `lt`'s HTTPS_PROXY tests: Debian's tinyproxy, configured here.

tinyproxy cannot listen on port 0, so a free port is picked just before it starts.
`ConnectPort` lists the ports CONNECT may reach (tinyproxy answers `403 Access violation`
for others), `BasicAuth` makes it ask for a password (`407`). Its log (LogLevel Info:
every request line) is its merged output.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.processes import Process, ProcessGroup
from harness.relay import free_port

TINYPROXY = "/usr/bin/tinyproxy"
READY_LINE = r"Starting main loop\. Accepting connections\."
# tinyproxy's own idle timeout for a tunnel; far above any test's traffic gap.
IDLE_TIMEOUT_S = 600
# Enough concurrent connections for an `lt` pool (10 sockets) and its registrations.
MAX_CLIENTS = 100


@dataclass
class Tinyproxy:
    process: Process
    port: int
    user: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """The proxy URL for HTTPS_PROXY, with its user-info when it asks for a password."""
        creds = f"{self.user}:{self.password}@" if self.user else ""
        return f"http://{creds}127.0.0.1:{self.port}"

    @property
    def bare_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connects(self) -> list[str]:
        """The targets of every CONNECT it was asked for, in order ("host:port")."""
        found = []
        for line in self.process.output().splitlines():
            if "Request (file descriptor" in line and ": CONNECT " in line:
                found.append(line.split(": CONNECT ", 1)[1].split(" ", 1)[0])
        return found


def start_tinyproxy(
    group: ProcessGroup,
    workdir: Path,
    connect_ports: list[int],
    user: str | None = None,
    password: str | None = None,
) -> Tinyproxy:
    """tinyproxy on 127.0.0.1, allowing CONNECT to `connect_ports` only."""
    if not shutil.which(TINYPROXY):
        pytest.fail("tinyproxy is not installed; run `make test` once (it installs it)")
    port = free_port()
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        f"Timeout {IDLE_TIMEOUT_S}",
        "LogLevel Info",
        f"MaxClients {MAX_CLIENTS}",
        "Allow 127.0.0.1",
        *(f"ConnectPort {p}" for p in connect_ports),
    ]
    if user:
        lines.append(f"BasicAuth {user} {password}")
    config = workdir / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n")
    process = group.start([TINYPROXY, "-d", "-c", str(config)], name="tinyproxy")
    process.wait_for_line(READY_LINE)
    return Tinyproxy(process, port, user, password)
