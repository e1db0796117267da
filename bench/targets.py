"""Where a scenario sends its traffic (`Target`), and the relays (or the reference server)
whose JSON API a run asks (`Relay`)."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

from bench.procs import Child

HTTP_TIMEOUT_S = 10.0


@dataclass
class Target:
    """Where a scenario sends its traffic: the app itself or a tunnel through a relay."""

    label: str  # one of bench.report.LABELS
    port: int = 0
    host: str = ""
    command: str = ""
    reason: str = ""  # why it is unavailable; "" when it works
    scheme: str = "http"  # https: the relay serving TLS itself
    # The processes a request crosses, by role ("relay", "reference", "client", "app"): whose
    # CPU per request the run reads from /proc.
    pids: dict[str, int] = field(default_factory=dict)
    headers: tuple[str, ...] = ()  # sent with every request ("Authorization: Basic ...")
    # The processes behind it by role, whose last output tells why it stopped answering.
    children: dict[str, Child] = field(default_factory=dict)
    name: str = ""  # the tunnel's name on its relay; "" for direct

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    @property
    def available(self) -> bool:
        return not self.reason


@dataclass
class Relay:
    """A relay on loopback (or the reference server, which has the same status routes)."""

    child: Child
    port: int
    ca: str = ""  # the CA file of its certificate when it serves TLS itself
    domain: str = "localhost"  # tunnels are <name>.<domain>:<port>
    dial: str = "localhost"  # the host name clients are given in --host
    role: str = "relay"  # its role in a Target's pids: "relay", or "reference"

    @property
    def scheme(self) -> str:
        return "https" if self.ca else "http"

    def get_json(self, path: str) -> tuple[int, Any]:
        conn: http.client.HTTPConnection
        if self.ca:
            context = ssl.create_default_context(cafile=self.ca)
            context.check_hostname = False  # the certificate names localhost, not 127.0.0.1
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S, context=context
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", path, headers={"Host": f"127.0.0.1:{self.port}"})
            answer = conn.getresponse()
            body = answer.read()
        finally:
            conn.close()
        return answer.status, json.loads(body) if body else None

    def status(self) -> dict[str, Any]:
        return self.get_json("/api/status")[1]

    def sockets(self, name: str) -> int:
        code, body = self.get_json(f"/api/tunnels/{name}/status")
        return body["connected_sockets"] if code == 200 else 0


def answers(relay: Relay) -> bool:
    """Whether the relay's status API answers 200 now."""
    try:
        return relay.get_json("/api/status")[0] == 200
    except (OSError, http.client.HTTPException, ValueError, ssl.SSLError):
        return False
