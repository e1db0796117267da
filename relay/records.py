"""What the relay keeps in the database, as a port: relay/ never imports the ORM code itself.

The relay writes a session row when a tunnel registers, batches of counter updates every
RELAY_FLUSH_S, node rows once per heartbeat (scale-out), and takes a lock on the database at
start; it never touches the database per request. `tunnels/records.py` implements `Records`
with the ORM and `tunnels.apps.TunnelsConfig.ready()` installs it (through relay.face), so the
import arrows point one way: tunnels -> relay. Every method is synchronous: the relay calls
them through `relay.database.call`, on the relay's database threads, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class SessionUpdate:
    """One tunnel's counters since the last flush (and whether it closed)."""

    id: int
    sockets: int
    peak_sockets: int
    requests: int
    bytes_in: int
    bytes_out: int
    last_activity_age_s: float
    closed: bool
    close_reason: str
    # The address of the client that holds the tunnel now (it moves with a client that
    # reclaims its tunnel by its pool secret from a new address): an anonymous tunnel's
    # owner, as the cluster-wide live counts read it.
    client_ip: str = ""


@dataclass(frozen=True)
class NodeLoad:
    """What a node's heartbeat says about its load (scale-out)."""

    tunnels: int
    sockets: int
    in_flight: int
    requests: int
    forwarded: int


@dataclass(frozen=True)
class UsageDelta:
    """What an account used on this node since the last batch, in one window (issue 16's
    account quotas, relay/pool/usage.py): `owner` is `user:<id>` or `addr:<address key>`,
    `window` "minute" or "day", `start` the window's first second (Unix time, UTC)."""

    owner: str
    window: str
    start: int
    requests: int
    bytes: int


@dataclass(frozen=True)
class MinuteRollup:
    """A node's traffic in one minute (relay/traffic.py), for the dashboard across nodes and
    restarts; `node` is "" for a single relay, `start` the minute's first second (Unix time)."""

    node: str
    start: int
    requests: int
    bytes_in: int
    bytes_out: int


class LiveLimitReached(Exception):
    """The owner already has `limit` live tunnels across all nodes (scale-out)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class DatabaseInUse(Exception):
    """Another relay holds this database (or this node name on it); the message says which."""


class Records(Protocol):
    # --- sessions: one row per registration -------------------------------------------------
    def open_session(
        self,
        *,
        subdomain: str,
        client_ip: str,
        port: int,
        max_sockets: int,
        owner_id: int | None = None,
        token_id: int | None = None,
        max_live: int = 0,
        tcp_port: int | None = None,
    ) -> int:
        """Insert a live session row and return its id (`tcp_port`: a TCP tunnel's public
        port; None for an HTTP tunnel). IntegrityError when the name has a
        live row already; with `max_live` (scale-out) LiveLimitReached when the owner has that
        many live tunnels on all nodes together."""
        ...

    def apply_updates(self, updates: list[SessionUpdate]) -> None: ...

    def close_stale_sessions(self, started_at: datetime) -> int:
        """Mark the sessions an earlier run of this relay (node) left live as closed: those
        opened before `started_at`, when this run started (it may register tunnels while
        this runs)."""
        ...

    def unusable_tokens(self, token_ids: set[int]) -> set[int]:
        """Which of these tokens may no longer hold tunnels (revoked, expired, user gone)."""
        ...

    def prune_closed_sessions(self, retention_days: int, batch: int) -> int: ...

    # --- visitor access and suspensions (issue 13) -------------------------------------------
    def suspended_names(self) -> dict[str, str]:
        """Every tunnel name under an active suspension, with its reason (visitors of these
        see the suspension page): read at start and when an operator lifts or suspends."""
        ...

    def suspended_ids(self) -> tuple[dict[int, str], dict[int, str]]:
        """The token ids and the user ids under an active suspension, each with its reason:
        read at start with the names, so the registry refuses them even when a suspension
        arrives after a registration's database check."""
        ...

    def team_member(self, credential: str, owner_user_id: int) -> int | None:
        """The user id of the API token `credential` when its user may visit a team-only
        tunnel of `owner_user_id` (the owner, staff, or sharing a group with the owner), the
        token usable and the user active; None otherwise. A visitor's Bearer token: the relay
        caches the answer briefly, never asks per request."""
        ...

    def team_user(self, user_id: int, owner_user_id: int) -> bool:
        """Whether the holder of a team pass (`user_id`) may still visit `owner_user_id`'s
        team-only tunnels (still active, in a shared group or staff, not suspended): the relay
        asks once per TEAM_ANSWER_TTL_S per pass holder and tunnel owner, never per request."""
        ...

    # --- nodes (scale-out) ------------------------------------------------------------------
    def heartbeat(
        self, name: str, advertise: str, started_at: datetime, draining: bool, load: NodeLoad
    ) -> None: ...

    def reap_dead_nodes(self, me: str, expiry_s: float) -> dict[str, int]: ...

    def directory(self, me: str, expiry_s: float) -> dict[str, str]: ...

    def closed_among(self, session_ids: list[int]) -> list[int]: ...

    def live_holder(self, subdomain: str) -> tuple[str, str] | None: ...

    def mark_draining(self, name: str) -> None: ...

    # --- account usage, without Redis (issue 16; relay/pool/usage.py) -------------------------
    def add_usage(self, deltas: list[UsageDelta]) -> dict[tuple[str, str, int], tuple[int, int]]:
        """Add each delta to its window's row (one transaction) and return every touched
        window's totals after, all nodes together: (owner, window, start) -> (requests, bytes)."""
        ...

    def usage_of(self, owner: str, minute: int, day: int) -> tuple[int, int]:
        """An account's requests in the minute starting at `minute` and bytes in the day
        starting at `day` (Unix times), all nodes together: read when its first tunnel here
        registers, so a restart does not reset its quota."""
        ...

    def prune_usage(self, before: int) -> int:
        """Delete windows that started before `before` (Unix time); how many."""
        ...

    # --- the dashboard's minutes (issue 16; relay/traffic.py) ---------------------------------
    def add_minutes(self, rollups: list[MinuteRollup]) -> None:
        """Add each node's minute to its row (one transaction)."""
        ...

    def minutes_since(self, start: int) -> list[MinuteRollup]:
        """Every node's minutes from `start` (Unix time) on, summed over nodes (node "")."""
        ...

    def prune_minutes(self, before: int) -> int:
        """Delete the minutes that started before `before` (Unix time); how many."""
        ...

    # --- start-up ---------------------------------------------------------------------------
    def lock_database(self, node_name: str) -> list[Any]:
        """The locks making this the only relay (node) on its database, to keep referenced
        for the process's life; DatabaseInUse when another one holds them."""
        ...

    def tokens_under_another_key(self) -> int:
        """How many usable API tokens were made under another SECRET_KEY (all refused)."""
        ...


_installed: Records | None = None


def install(records: Records) -> None:
    global _installed
    _installed = records


def get() -> Records:
    if _installed is None:
        raise RuntimeError(
            "no Records installed: the `tunnels` app installs them when Django starts "
            "(tunnels.apps.TunnelsConfig.ready); is it in INSTALLED_APPS?"
        )
    return _installed
