"""The relay's face: the one module tunnels/ and tunnelsite/ use to talk to the running relay.

Everything else in relay/ is its own business (an import-linter `protected` contract in
pyproject.toml says so; relay.protocol, the wire's constants, is public too). From here:

- the registry of live tunnels (register, close, status, get) and its refusals;
- the per-tunnel quota the registration view builds from a plan;
- what the dashboard reads: a snapshot of live tunnels and traffic;
- the control messages the admin sends to every relay (close tunnels);
- visitor addresses as the relay keys them (owners, rate limits);
- the database port (relay.records) the `tunnels` app implements and installs;
- the ASGI application tunnelsite/asgi.py serves.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from relay import records
from relay.asgi_types import ASGIApp
from relay.cluster.forward import forward_api, health
from relay.cluster.hop import ClusterGate
from relay.edge.routing import HostRouter
from relay.headers import address_key, client_ip
from relay.pool.errors import RegistrationError
from relay.pool.quota import Quota
from relay.pool.registry import Registry, get_registry
from relay.protocol import CLOSE_REASON_MAX_CHARS, CONTROL_GROUP
from relay.records import (
    DatabaseInUse,
    LiveLimitReached,
    NodeLoad,
    Records,
    SessionUpdate,
)
from relay.traffic import Counts, LiveTunnel, Minute, Snapshot, get_traffic, snapshot

__all__ = [
    "CONTROL_GROUP",
    "Counts",
    "DatabaseInUse",
    "LiveLimitReached",
    "LiveTunnel",
    "Minute",
    "NodeLoad",
    "Quota",
    "Records",
    "RegistrationError",
    "Registry",
    "SessionUpdate",
    "Snapshot",
    "address_key",
    "application",
    "client_ip",
    "close_message",
    "get_registry",
    "get_traffic",
    "install_records",
    "snapshot",
]


def install_records(implementation: Records) -> None:
    """Give the relay its database (tunnels.apps.TunnelsConfig.ready calls this)."""
    records.install(implementation)


def close_message(names: list[str], token_ids: list[int], reason: str) -> dict[str, object]:
    """The control message (sent to CONTROL_GROUP) that closes these tunnels on every relay:
    those with these names and those opened with these tokens (relay/cluster/control.py
    obeys it)."""
    return {
        "type": "tunnel.close",
        "names": sorted(set(names)),
        "token_ids": sorted(set(token_ids)),
        "reason": reason[:CLOSE_REASON_MAX_CHARS],
    }


def application(site_http: Any) -> ASGIApp:
    """The relay's ASGI application in front of the site (Django's ASGIHandler, typed with
    dict scopes: Any at this boundary): tunnel hosts go to the
    tunnel, the bare domain to `site_http`; on a named node (RELAY_NODE_NAME, scale-out)
    behind the gate that checks hop markers and answers /healthz."""
    router: ASGIApp = HostRouter(site_http=site_http)
    if settings.RELAY_NODE_NAME:
        router = ClusterGate(router, health, forward_api)
    return router
