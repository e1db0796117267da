"""The public ports TCP tunnels (`lt tcp`) get, as the site sees them: this relay's range
(RELAY_TCP_PORTS), the port a client asks for (protocol.TCP_REMOTE_PORT_HEADER) and the
ports the operator reserved (tunnels.models.ReservedTcpPort), and the ports the session rows
keep for their owners for protocol.TCP_PORT_QUARANTINE_S (`quarantined_for`, `given_back`).
The relay hands out the ports themselves (relay/pool/tcp_ports.py); the site only says which
ones a tunnel may have, and which one it had."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from relay import protocol
from tunnels.models import ReservedTcpPort, TunnelSession


class BadPort(ValueError):
    """A port that cannot be asked for; `message` says why and what would do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def port_range() -> tuple[int, int] | None:
    """This relay's RELAY_TCP_PORTS (first, last); None: it offers no TCP tunnels."""
    value: tuple[int, int] | None = settings.RELAY_TCP_PORTS
    return value


def range_text(ports: tuple[int, int]) -> str:
    first, last = ports
    return str(first) if first == last else f"{first}-{last}"


def in_range(port: int) -> bool:
    ports = port_range()
    return ports is not None and ports[0] <= port <= ports[1]


def parse_remote_port(raw: str | None) -> int:
    """The port in TCP_REMOTE_PORT_HEADER (None or empty: 0, any free port); raises BadPort
    naming the range when it is not a whole number within RELAY_TCP_PORTS."""
    if raw is None or not raw.strip():
        return 0
    ports = port_range()
    where = f"one of this relay's TCP ports, {range_text(ports)}" if ports else "a TCP port"
    text = raw.strip()
    # isdecimal and a length bound: no "+5", "5_000" or a thousand-digit number reach int().
    if not (text.isascii() and text.isdecimal() and len(text) <= 5):
        raise BadPort(f"--remote-port must be a whole number, {where}; not {text[:20]!r}.")
    port = int(text)
    if not in_range(port):
        raise BadPort(f"--remote-port {port} is not {where}.")
    return port


def reserved_for_others(user_id: int | None) -> frozenset[int]:
    """The ports of this relay's range reserved for anyone but `user_id` (or for nobody):
    the relay never gives them to this user's tunnel."""
    ports = port_range()
    if ports is None:
        return frozenset()
    rows = ReservedTcpPort.objects.filter(port__range=ports)
    if user_id is not None:
        rows = rows.exclude(user_id=user_id)
    return frozenset(rows.values_list("port", flat=True))


def all_reserved() -> frozenset[int]:
    """Every reserved port of this relay's range, the user's own too: a random port is never
    one of them (only an asked --remote-port reserved for the user takes one)."""
    ports = port_range()
    if ports is None:
        return frozenset()
    return frozenset(
        ReservedTcpPort.objects.filter(port__range=ports).values_list("port", flat=True)
    )


def _kept_since() -> datetime:
    return timezone.now() - timedelta(seconds=protocol.TCP_PORT_QUARANTINE_S)


def _kept() -> Q:
    """A session row that still keeps its port: live, or closed within the quarantine."""
    return Q(is_live=True) | Q(closed_at__gte=_kept_since())


def quarantined_for(user_id: int | None, ip: str) -> frozenset[int]:
    """The ports of the range whose latest session row (live, or closed within the
    quarantine) belongs to another owner: another user, or for an anonymous registration
    (`user_id` None) a user or another address. One query, off the byte path."""
    ports = port_range()
    if ports is None:
        return frozenset()
    rows = (
        TunnelSession.objects.filter(_kept(), tcp_port__range=ports)
        .order_by("tcp_port", "-opened_at", "-pk")
        .values_list("tcp_port", "owner_id", "client_ip")
    )
    seen: set[int] = set()
    kept: set[int] = set()
    for port, owner_id, client_ip in rows:
        if port is None or port in seen:
            continue  # an older row: the latest one decides
        seen.add(port)
        if owner_id != user_id or (user_id is None and client_ip != ip):
            kept.add(port)
    return frozenset(kept)


def given_back(user_id: int | None, name: str | None) -> int:
    """The port the latest session row of `name` had, when that row is the user's and still
    keeps it (live, or closed within the quarantine) and it is of the range; 0: none. The
    relay tries it first, so `lt tcp` re-registering after a relay restart keeps its port."""
    if user_id is None or name is None:
        return 0
    row = (
        TunnelSession.objects.filter(subdomain=name, tcp_port__isnull=False)
        .order_by("-opened_at", "-pk")
        .values_list("tcp_port", "owner_id", "is_live", "closed_at")
        .first()
    )
    if row is None:
        return 0
    port, owner_id, is_live, closed_at = row
    recent = is_live or (closed_at is not None and closed_at >= _kept_since())
    if port is None or owner_id != user_id or not recent or not in_range(port):
        return 0
    return port


def is_reserved_for(port: int, user_id: int | None) -> bool:
    return (
        user_id is not None and ReservedTcpPort.objects.filter(port=port, user_id=user_id).exists()
    )


def reserved_of(user_id: int) -> list[ReservedTcpPort]:
    """The user's reserved ports, for the account page."""
    return list(ReservedTcpPort.objects.filter(user_id=user_id).order_by("port"))
