"""The public ports TCP tunnels (`lt tcp`) get, as the site sees them: this relay's range
(RELAY_TCP_PORTS), the port a client asks for (protocol.TCP_REMOTE_PORT_HEADER) and the
ports the operator reserved (tunnels.models.ReservedTcpPort). The relay hands out the ports
themselves (relay/pool/tcp_ports.py); the site only says which ones a tunnel may have."""

from __future__ import annotations

from django.conf import settings

from tunnels.models import ReservedTcpPort


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


def is_reserved_for(port: int, user_id: int | None) -> bool:
    return (
        user_id is not None and ReservedTcpPort.objects.filter(port=port, user_id=user_id).exists()
    )


def reserved_of(user_id: int) -> list[ReservedTcpPort]:
    """The user's reserved ports, for the account page."""
    return list(ReservedTcpPort.objects.filter(user_id=user_id).order_by("port"))
