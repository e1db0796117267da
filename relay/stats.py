"""The relay's own counters of what happened, for /metrics (relay/metrics.py reads them).

One slotted object, `STATS`, of plain ints: each event adds one where it happens
(`stats.STATS.offline += 1`), on the byte path too, so nothing here may lock, allocate or
log. What the registry holds already (live tunnels, pool sockets, waiters, each tunnel's
requests and bytes) is read from there at scrape time, not counted twice; what it forgets
when a tunnel closes (its requests and bytes) is kept here per plan by `tunnel_closed`, so
the totals never go down. A tunnel's plan is the one it was opened under, for its whole
life (a reclaim under another plan keeps it), so no traffic moves from one plan's row to
another's; and traffic an exchange still running counts after its tunnel closed (a
download's bytes, added as it ends) goes straight to the plan's row here (`carried_late`,
from relay/pool/tunnel.py's `Tunnel.carried`), so none is lost from the totals.

Each of the relay's own 502, 503 and 504 answers to visitors has a cause: a field of `Stats`
and a row of CAUSES (its status, and what it means for an operator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from relay.protocol import STATUS_CLASSES

# (field, status, meaning): every 502/503/504 the relay answers itself has one.
CAUSES: tuple[tuple[str, int, str], ...] = (
    ("offline", 503, "the tunnel's client is not connected (no pool socket, none coming back)"),
    ("busy", 503, "too many visitors already wait for one tunnel's pool sockets"),
    ("closed", 503, "the tunnel closed while the visitor waited for a pool socket"),
    ("websockets_full", 503, "the tunnel carries all the WebSockets its pool sockets allow"),
    ("team_busy", 503, "a team-only tunnel's membership could not be checked in time"),
    ("signins_full", 503, "too many team sign-ins lately to remember another ticket"),
    ("peer_unreachable", 503, "the node that holds the tunnel could not be reached"),
    ("no_socket", 504, "no pool socket became free in time (RELAY_SOCKET_WAIT_S)"),
    ("over_share", 504, "the visitor's address already holds its share of the pool sockets"),
    ("response_timeout", 504, "the app did not answer in time (RELAY_RESPONSE_TIMEOUT_S)"),
    ("peer_timeout", 504, "the node that holds the tunnel did not answer in time"),
    ("app_unreachable", 502, "the client closed the pool socket without an answer (app down)"),
    ("bad_response", 502, "the tunnel sent an invalid or incomplete response"),
    ("peer_bad_response", 502, "the node that holds the tunnel answered badly"),
)

# Registration outcomes: "ok", or the status of the refusal, from a fixed set (any other
# status counts as "other"), so the label's values stay bounded.
REGISTRATION_STATUSES = (400, 401, 403, 404, 409, 426, 429, 503)
REGISTRATION_OUTCOMES = ("ok", *map(str, REGISTRATION_STATUSES), "other")


class Counted(Protocol):
    """A closing tunnel, as its totals are kept (relay/pool/tunnel.py's Tunnel)."""

    plan: str
    session_id: int | None  # None: it never opened (its registration failed or was left)
    requests: int
    bytes_in: int
    bytes_out: int


@dataclass(slots=True)
class Closed:
    """What the tunnels of one plan that closed on this relay carried, in total."""

    tunnels: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class Stats:
    __slots__ = (
        *(name for name, _, _ in CAUSES),
        "responses",
        "registrations",
        "forwarded_http",
        "forwarded_websockets",
        "websockets_opened",
        "websockets_closed",
        "tcp_opened",
        "closed_by_plan",
    )

    def __init__(self) -> None:
        self.offline = 0
        self.busy = 0
        self.closed = 0
        self.websockets_full = 0
        self.team_busy = 0
        self.signins_full = 0
        self.peer_unreachable = 0
        self.no_socket = 0
        self.over_share = 0
        self.response_timeout = 0
        self.peer_timeout = 0
        self.app_unreachable = 0
        self.bad_response = 0
        self.peer_bad_response = 0
        # responses[status // 100]: answers to requests for a tunnel's host on this node
        self.responses = [0] * STATUS_CLASSES
        self.registrations = dict.fromkeys(REGISTRATION_OUTCOMES, 0)
        self.forwarded_http = 0  # requests sent on to the node that owns the tunnel
        self.forwarded_websockets = 0  # WebSockets sent on to the node that owns the tunnel
        self.websockets_opened = 0  # handshakes sent to a tunnel's app over a pool socket
        self.websockets_closed = 0  # of those, the ones that ended
        self.tcp_opened = 0  # TCP visitor connections admitted to a TCP tunnel
        # per plan: what closed tunnels carried (bounded by the operator's plans)
        self.closed_by_plan: dict[str, Closed] = {}

    def registration(self, status: int) -> None:
        """A registration answered with `status` (200: it succeeded)."""
        outcome = "ok" if status == 200 else str(status)
        key = outcome if outcome in self.registrations else "other"
        self.registrations[key] += 1

    def tunnel_closed(self, tunnel: Counted) -> None:
        """Keep what a closing tunnel carried (the registry forgets it). Only a tunnel that
        opened (its registration wrote its session row) counts as closed: a registration
        refused or left after its Tunnel was made closes one that never did. What any of
        them carried is kept, since a scrape may have seen it while the name was claimed."""
        closed = self._plan(tunnel.plan)
        if tunnel.session_id is not None:
            closed.tunnels += 1
        closed.requests += tunnel.requests
        closed.bytes_in += tunnel.bytes_in
        closed.bytes_out += tunnel.bytes_out

    def carried_late(self, plan: str, requests: int, bytes_in: int, bytes_out: int) -> None:
        """Traffic counted by a tunnel of `plan` after `tunnel_closed` kept its totals (an
        exchange that was still running when it closed)."""
        closed = self._plan(plan)
        closed.requests += requests
        closed.bytes_in += bytes_in
        closed.bytes_out += bytes_out

    def _plan(self, plan: str) -> Closed:
        closed = self.closed_by_plan.get(plan)
        if closed is None:
            closed = self.closed_by_plan[plan] = Closed()
        return closed


STATS = Stats()
