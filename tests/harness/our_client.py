"""Our `lt` (`python -m tunnelsite_client.cli`) as a child process of an end-to-end test."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.procs import client_env
from harness.processes import PYTHON, Process, ProcessGroup
from harness.relay import Relay


@dataclass
class OurLt:
    process: Process
    url: str
    name: str


class OurLtLauncher:
    """Runs our `lt` against a relay; `__call__` waits for the URL and every pool socket."""

    def __init__(self, group: ProcessGroup, config_dir: Path) -> None:
        self.group = group
        self.config_dir = config_dir

    def start(
        self, relay: Relay, app_port: int, *extra: str, env: dict[str, str] | None = None
    ) -> Process:
        environ = client_env()
        environ.update(LT_CONFIG_DIR=str(self.config_dir), PYTHONUNBUFFERED="1", **(env or {}))
        args = [PYTHON, "-m", "tunnelsite_client.cli", "--port", str(app_port)]
        args += ["--host", f"http://localhost:{relay.port}", *extra]
        return self.group.start(args, environ, name="our lt")

    def __call__(
        self, relay: Relay, app_port: int, *extra: str, env: dict[str, str] | None = None
    ) -> OurLt:
        process = self.start(relay, app_port, *extra, env=env)
        url = process.wait_for_line(r"your url is: (\S+)").group(1)
        name = re.match(r"https?://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
        relay.wait_for_sockets(name, int(relay.env.get("RELAY_MAX_SOCKETS", "10")))
        return OurLt(process, url, name)
