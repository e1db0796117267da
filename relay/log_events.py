"""The names and fields of the log lines an operator's tooling reads (docs/logs.md).

A line that is one of these events carries `event` and its fields as the record's extras
(`logger.info(..., extra=fields)`): the text format prints only the message, as before; the
JSON format (tunnelsite/logconfig.py) prints every field as a key. Names are stable: a log
pipeline may select on them.
"""

from __future__ import annotations

from typing import Any, Protocol

TUNNEL_OPENED = "tunnel_opened"
TUNNEL_CLOSED = "tunnel_closed"
REGISTRATION_REFUSED = "registration_refused"
METRICS_REFUSED = "metrics_refused"  # tunnels/metrics_view.py
OPERATOR_ACTION = "operator_action"
ACCESS = "access"
# (and "fault": any line with a traceback, set by the JSON formatter)

ANONYMOUS = "anonymous"


class Described(Protocol):
    """What a tunnel's events say of it (relay/pool/tunnel.py's `Tunnel` fits)."""

    name: str
    client_ip: str
    user_id: int | None

    @property
    def tcp(self) -> object | None: ...


def owner_of(user_id: int | None) -> str | int:
    """A token's user id, or "anonymous"."""
    return ANONYMOUS if user_id is None else user_id


def tunnel_fields(tunnel: Described, event: str, node: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": event,
        "tunnel": tunnel.name,
        "kind": "tcp" if tunnel.tcp is not None else "http",
        "owner": owner_of(tunnel.user_id),
        "client_ip": tunnel.client_ip,
    }
    if node:
        fields["node"] = node
    return fields
