"""The relay's face: the one module tunnels/ uses to talk to the running relay.

Everything else in relay/ is its own business (an import-linter `protected` contract in
pyproject.toml says so; relay.protocol, the wire's constants, is public too). From here:

- the registry of live tunnels (register, close, status, get) and its refusals;
- the per-tunnel quota the registration view builds from a plan;
- what the dashboard reads: a snapshot of live tunnels and traffic;
- the control messages the admin sends to every relay (close tunnels);
- visitor addresses as the relay keys them (owners, rate limits);
- the database port (relay.records) the `tunnels` app implements and installs.

The ASGI application is relay.asgi's, not face's: it loads the byte path, which the site's
other processes need not.
"""

from __future__ import annotations

from relay import records
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
