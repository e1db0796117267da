"""The relay's face: the one module tunnels/ uses to talk to the running relay.

Everything else in relay/ is its own business (an import-linter `protected` contract in
pyproject.toml says so; relay.protocol, the wire's constants, is public too, and relay.asgi,
the ASGI application, is tunnelsite/asgi.py's alone: every Django process imports this module,
so it loads neither the edge, the proxies nor the cluster). What crosses here is functions and
plain values, never a live relay object: each function is a thin call on the process's
registry, made on the relay's event loop (the views are async, or the dashboard gets there
with async_to_sync). From here:

- registration: its rate checks per owner, room under an owner's live-tunnel limit, and
  `register` with the plan's quota, answered with a `Registration`;
- a live tunnel's status and its closing by its own client; the relay's counts and health;
- what the dashboard reads: a snapshot of live tunnels and traffic;
- the control messages the admin sends to every relay (close tunnels);
- visitor addresses as the relay keys them (owners, rate limits);
- the database port (relay.records) the `tunnels` app implements and installs, and
  `database_call`, where the views' ORM calls run (relay/database.py).
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from typing import Any

from relay import metrics, records, stats, visitor_pass
from relay.database import call as database_call
from relay.headers import address_key, client_ip
from relay.pool import bandwidth
from relay.pool import captures as inspector
from relay.pool.access import VisitorRules
from relay.pool.captures import ReplayError
from relay.pool.errors import RegistrationError
from relay.pool.quota import Quota
from relay.pool.registry import get_registry
from relay.pool.tcp_text import http_refusal as tcp_refusal
from relay.pool.tunnel import Tunnel
from relay.pool.usage import account_of
from relay.protocol import CLOSE_REASON_MAX_CHARS, CONTROL_GROUP
from relay.records import (
    DatabaseInUse,
    LiveLimitReached,
    MinuteRollup,
    NodeLoad,
    Records,
    SessionUpdate,
    UsageDelta,
)
from relay.traffic import Counts, LiveTunnel, Minute, Snapshot, get_traffic, snapshot

__all__ = [
    "CONTROL_GROUP",
    "AccountTunnel",
    "Closing",
    "Counts",
    "DatabaseInUse",
    "LiveLimitReached",
    "LiveTunnel",
    "Minute",
    "MinuteRollup",
    "NodeLoad",
    "PlanQuota",
    "Records",
    "Registration",
    "TcpAsk",
    "RegistrationError",
    "ReplayError",
    "SessionUpdate",
    "Snapshot",
    "TunnelStatus",
    "UsageDelta",
    "VisitorRules",
    "accepting",
    "account_tunnels",
    "address_key",
    "capture",
    "captures",
    "inspecting",
    "client_ip",
    "close_for_client",
    "close_message",
    "dashboard_snapshot",
    "database_call",
    "minute_writes_begun",
    "issue_ticket",
    "lift_message",
    "refusal_for",
    "signout_message",
    "install_records",
    "live_count",
    "metrics_text",
    "registration_answered",
    "register",
    "registration_wait",
    "relay_status",
    "release_for_owner",
    "replay",
    "take_registration",
    "tunnel_status",
]


def install_records(implementation: Records) -> None:
    """Give the relay its database (tunnels.apps.TunnelsConfig.ready calls this)."""
    records.install(implementation)


def close_message(
    names: list[str],
    token_ids: list[int],
    reason: str,
    *,
    user_ids: list[int] | None = None,
    cooldown_s: float = 0.0,
    suspend: bool = False,
    owners: dict[str, str] | None = None,
) -> dict[str, object]:
    """The control message (sent to CONTROL_GROUP) that closes these tunnels on every relay:
    those with these names, opened with these tokens, or owned by these users
    (relay/cluster/control.py obeys it). `cooldown_s` (the admin's Disconnect): the closed
    tunnels' names and owners may not register again for that long; `owners` (name -> owner key,
    "user:<id>"/"ip:<addr>", from the session rows) lets relays that do not hold the tunnel
    (another node) cool its owner down too. `suspend`: visitors of `names` see the
    suspension page with `reason` until lift_message."""
    return {
        "type": "tunnel.close",
        "names": sorted(set(names)),
        "token_ids": sorted(set(token_ids)),
        "user_ids": sorted(set(user_ids or ())),
        "reason": reason[:CLOSE_REASON_MAX_CHARS],
        "cooldown_s": float(cooldown_s),
        "suspend": bool(suspend),
        "owners": {name: owner for name, owner in sorted((owners or {}).items())},
    }


# --- registration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanQuota:
    """A plan's limits (tunnels/plans.py's PlanLimits); 0 means no limit. Requests per minute
    and bytes per day are counted per account (relay/pool/usage.py), across its tunnels."""

    per_minute: int
    per_day_bytes: int
    max_body_bytes: int
    idle_timeout_s: int
    plan: str = ""  # its name, in the refusals that say which limit was reached
    max_bytes_per_second: int = 0  # per owner on this relay, each direction (bandwidth.py); 0: none


@dataclass(frozen=True)
class Registration:
    """What the registration answer tells the client (protocol.registration_answer)."""

    name: str
    port: int  # the raw pool port; 0: none (our lt, which upgrades)
    max_sockets: int
    advertise_host: str | None  # scale-out: the pool address of this node; None: the relay's
    # Our lt's upgraded pool connections (protocol.POOL_PATH): the secret binding them to this
    # registration (never logged, never in repr), and this node's public base URL (scale-out;
    # None: the URL the client registered with).
    pool_secret: str = field(default="", repr=False)
    node_url: str | None = None
    tcp_port: int = 0  # a TCP tunnel's public port (tcp://RELAY_TCP_HOST:port); 0: HTTP


@dataclass(frozen=True)
class TcpAsk:
    """A TCP tunnel's registration (`lt tcp`; relay/pool/tcp_ports.py gives the port).

    `port`: the port asked for (`--remote-port`, one the site found reserved for this user;
    0: any free port of RELAY_TCP_PORTS). `reserved`: the ports reserved for anyone else (or
    for no one), which this tunnel never gets. `max_live`: the owner's live TCP tunnels its
    plan allows (0: no limit), counted on this relay. `preferred`: the port to try first
    (the one this name had, for this user, within protocol.TCP_PORT_QUARANTINE_S; 0: none),
    so a relay restart gives every `lt tcp` its port back."""

    port: int = 0
    reserved: frozenset[int] = frozenset()
    max_live: int = 0
    preferred: int = 0


def _wait_s(wait_s: float) -> int:
    return max(1, math.ceil(wait_s)) if wait_s else 0


def take_registration(key: str) -> int:
    """Spend one registration of `key`'s rate (RELAY_REGISTRATION_BURST, then
    RELAY_REGISTRATIONS_PER_MINUTE): 0 when allowed, else the whole seconds to wait (nothing
    spent)."""
    return _wait_s(get_registry().registrations.take(key, time.monotonic()))


def registration_wait(key: str) -> int:
    """Whole seconds until `key` may register again (0: now); nothing is spent."""
    return _wait_s(get_registry().registrations.wait(key, time.monotonic()))


def release_for_owner(owner: str, limit: int) -> bool:
    """Make room for one more of the owner's tunnels under `limit`, releasing those whose
    client is gone; False when its connected tunnels alone reach the limit."""
    return get_registry().release_for_owner(owner, limit)


async def register(
    requested: str | None,
    *,
    owner: str,
    client_ip: str,
    max_sockets: int,
    user_id: int | None,
    token_id: int | None,
    live_limit: int,
    client_id: str,
    takeover: bool,
    reserved: frozenset[str],
    quota: PlanQuota,
    raw_pool: bool = True,
    pool_secret: str = "",
    rules: VisitorRules | None = None,
    inspect: bool = False,
    tcp: TcpAsk | None = None,
    plan: str = "",
) -> Registration:
    """Register a tunnel (the name asked for, or a random one) or reclaim the owner's, which
    keeps its counters and takes this registration's limits; raises RegistrationError with
    what the client is told.
    `live_limit` is counted across the cluster on a named node (here it was checked
    already, with release_for_owner). `raw_pool`: open a raw pool port (False for our lt,
    which upgrades connections on the relay's own port); `pool_secret`: the secret our lt had
    for this name, with which it reclaims it from another address. `rules`: who may visit
    (tunnels/access.py); a reclaimed tunnel takes the new registration's rules. `inspect`: the
    plan lets the relay keep the tunnel's last exchanges for its owner (relay/pool/captures.py).
    `tcp`: a TCP tunnel (`lt tcp`), given a public port of RELAY_TCP_PORTS; a name held by a
    tunnel of the other kind is refused (409). `plan`: the plan's name, /metrics' label of a new
    tunnel for its whole life (a reclaim under another plan keeps the one it opened under: its
    counters never move between plans, though its limits are the new plan's)."""
    registry = get_registry()
    tunnel = await registry.register(
        requested,
        owner=owner,
        client_ip=client_ip,
        max_conn_count=max_sockets,
        user_id=user_id,
        token_id=token_id,
        max_live=live_limit if registry.cluster is not None else 0,  # scale-out
        client_id=client_id,
        takeover=takeover,
        reserved=reserved,
        raw_pool=raw_pool,
        pool_secret=pool_secret,
        rules=rules,  # set on the tunnel before the name is claimed (the gate from the start)
        tcp=tcp,  # TcpAsk fits relay/pool/tcp_ports.py's TcpWanted
        plan=plan,  # a new tunnel's; a reclaimed one keeps the plan it opened under
    )
    # A reclaimed tunnel keeps its captures if still allowed; a TCP tunnel has none to keep.
    inspector.enable(tunnel, inspect and tunnel.tcp is None)
    # The plan's limits as they are now, for a reclaimed tunnel too (its client reconnecting
    # must not keep a plan the operator changed since); what was used is the account's
    # (usage.py), kept whatever the tunnel, and an anonymous tunnel its client took to a new
    # address counts for that address from now on.
    fresh = _quota(quota)
    if fresh is not None and fresh.counts:  # the account's use, shared by its tunnels
        fresh.usage = await registry.usage.attach(account_of(tunnel.owner))
    if tunnel.quota is not None:  # swapped whole, after the await: never a quota uncounted
        tunnel.quota.cancel_idle_timer()
    tunnel.quota = fresh
    if fresh is not None and not tunnel.closed:
        fresh.start_idle_timer(tunnel)
    if not tunnel.closed:  # a reclaimed tunnel keeps its buckets, at this plan's rate
        rate, now = quota.max_bytes_per_second, time.monotonic()
        tunnel.shaper = bandwidth.owners.rejoin(tunnel.shaper, tunnel.owner, rate, now)
    cluster = registry.cluster  # scale-out
    return Registration(
        name=tunnel.name,
        port=tunnel.port,
        max_sockets=tunnel.max_conn_count,
        advertise_host=cluster.advertise_host if cluster is not None else None,
        pool_secret=tunnel.pool_secret,
        node_url=cluster.node_url if cluster is not None else None,
        tcp_port=_tcp_port(tunnel),
    )


def _tcp_port(tunnel: Tunnel) -> int:
    return tunnel.tcp.port if tunnel.tcp is not None else 0


def _tcp_connections(tunnel: Tunnel) -> int:
    return tunnel.tcp.live if tunnel.tcp is not None else 0


def _quota(limits: PlanQuota) -> Quota | None:
    quota = Quota(
        per_minute=limits.per_minute,
        per_day_bytes=limits.per_day_bytes,
        max_body_bytes=limits.max_body_bytes,
        idle_timeout_s=limits.idle_timeout_s,
        plan=limits.plan,
    )
    return None if quota.empty else quota


# --- visitor access (relay/pool/access.py, relay/visitor_pass.py) ----------------------------
def issue_ticket(name: str, user_id: int, *, owner_user_id: int | None) -> str:
    """A one-time ticket that lets `user_id` into the team-only tunnel `name` while
    `owner_user_id` (TunnelStatus's, None: anonymous) owns it (the bare domain's sign-in,
    tunnels/signin.py, issues it after checking the user is allowed; the relay exchanges it
    for a pass at protocol.TICKET_PATH on the tunnel's host). The ticket and the pass carry
    the owner: when the name passes to another owner, both are refused. `owner_user_id` is
    keyword-only and required: a caller of the old two-argument form fails with TypeError."""
    return visitor_pass.issue_ticket(name, user_id, owner_user_id=owner_user_id)


def signout_message(user_id: int) -> dict[str, object]:
    """The control message (CONTROL_GROUP) that ends every pass `user_id` was given before
    now, on every relay: sent when the user signs out on the bare domain."""
    return visitor_pass.signout_message(user_id)


# --- operators: disconnect and suspend (relay/pool/sanctions.py) ------------------------------
def refusal_for(name: str | None, owner: str) -> RegistrationError | None:
    """Why a registration of `name` (None: a random name) by `owner` is refused now by an
    operator's action held in memory (a disconnect's cool-down, a suspended name), with the
    reason code (protocol.REFUSAL_*) and Retry-After; None when it is not. `owner` "" checks
    the name only (a token's owner is known after the database; the registry checks it)."""
    return get_registry().sanctions.refusal(name, owner)


def lift_message(
    names: list[str], token_ids: list[int] | None = None, user_ids: list[int] | None = None
) -> dict[str, object]:
    """The control message that lifts the suspension of these names, tokens and users on
    every relay: only those no other active suspension covers (tunnels/suspensions.py sends
    those)."""
    return {
        "type": "tunnel.lift",
        "names": sorted(set(names)),
        "token_ids": sorted(set(token_ids or ())),
        "user_ids": sorted(set(user_ids or ())),
    }


# --- a live tunnel, and the relay ---------------------------------------------------------
@dataclass(frozen=True)
class TunnelStatus:
    """A live tunnel as it was when read: values only."""

    name: str
    owner: str  # "ip:<addr>" for anonymous tunnels, "user:<id>" for token holders
    client_id: str  # our lt's per-run id; "" for the npm client
    connected_sockets: int
    opened_at: float  # Unix time; with the name, which tunnel this was (close_for_client)
    user_id: int | None = None  # the token's user; None: anonymous
    token_id: int | None = None  # the API token it was opened with; None: anonymous
    tcp_port: int = 0  # a TCP tunnel's public port; 0: an HTTP tunnel
    tcp_connections: int = 0  # a TCP tunnel's visitor connections open now
    # The account's limit reached now, as its visitors are told ("": none; docs/quotas.md).
    limit_reached: str = ""


def _status(tunnel: Tunnel) -> TunnelStatus:
    return TunnelStatus(
        name=tunnel.name,
        owner=tunnel.owner,
        client_id=tunnel.client_id,
        connected_sockets=tunnel.connected_sockets,
        opened_at=tunnel.opened_at,
        user_id=tunnel.user_id,
        token_id=tunnel.token_id,
        tcp_port=_tcp_port(tunnel),
        tcp_connections=_tcp_connections(tunnel),
        limit_reached=tunnel.quota.reached(time.time()) if tunnel.quota is not None else "",
    )


def tunnel_status(name: str) -> TunnelStatus | None:
    """The live tunnel called `name` (in any case: names are lowercase, as hosts are) on this
    relay, or None."""
    tunnel = get_registry().get(name.lower())
    return _status(tunnel) if tunnel is not None else None


class Closing(enum.Enum):
    CLOSED = "closed"  # or closed already
    NOT_THE_OWNER = "not the owner"
    ANOTHER_CLIENT = "held by another client of the owner"


def close_for_client(seen: TunnelStatus, owner: str, client_id: str, reason: str) -> Closing:
    """Close the tunnel `seen` describes for the client asking: only its owner may, and only
    the client holding it now when the asker sends its id (`client_id`; "" when none). The
    tunnel is judged as it is now; if it is gone meanwhile (or another took its name), as
    `seen` described it, and nothing is closed."""
    registry = get_registry()
    tunnel = registry.get(seen.name)
    if tunnel is not None and tunnel.opened_at != seen.opened_at:
        tunnel = None  # another tunnel has the name now: not the one asked about
    now = _status(tunnel) if tunnel is not None else seen
    if owner != now.owner:
        return Closing.NOT_THE_OWNER
    if client_id and client_id != now.client_id:
        return Closing.ANOTHER_CLIENT
    if tunnel is not None:
        registry.close(tunnel, reason)
    return Closing.CLOSED


def registration_answered(status: int) -> None:
    """Count a registration answered with `status` (200: registered) for /metrics."""
    stats.STATS.registration(status)


def metrics_text() -> tuple[bytes, str]:
    """/metrics in Prometheus' text format and its content type (call it on the relay's
    event loop): read now from the registry and the relay's counters (relay/metrics.py)."""
    return metrics.text(), metrics.CONTENT_TYPE


def live_count() -> int:
    """How many tunnels are live on this relay (their clients connected or in grace)."""
    return len(get_registry().tunnels)


def accepting() -> bool:
    """False once this relay drains (shutting down): it registers no more tunnels."""
    return get_registry().accepting


def relay_status() -> dict[str, Any]:
    """This relay's counts for /api/status: tunnels, sockets, in flight, tasks, uptime."""
    return get_registry().status()


def dashboard_snapshot() -> Snapshot:
    """What the dashboard shows, read in one go (call it on the relay's event loop)."""
    return snapshot(get_registry(), get_traffic(), time.time())


def minute_writes_begun() -> int:
    """How many writes of the dashboard's minutes this relay has begun (on the loop): the
    dashboard's check that no write committed while it read the rows."""
    return get_traffic().writes_begun


# --- the request inspector (relay/pool/captures.py) -----------------------------------------------
# Plain JSON-ready dicts in the shapes relay.protocol documents at INSPECT_PATH. The site
# decides who may see them (the tunnel's owner: TunnelStatus.owner); the relay keeps them.
def inspecting(name: str) -> bool:
    """Whether the live tunnel `name` is here and its plan keeps its exchanges (decided at
    its registration); False when it is not live on this relay."""
    return inspector.kept(get_registry().get(name.lower()))


def captures(name: str, after: int = 0) -> list[dict[str, Any]] | None:
    """Summaries of the live tunnel `name`'s kept exchanges newer than id `after`, newest
    first; None when no such tunnel is live here or its plan keeps none."""
    return inspector.summaries(get_registry().get(name.lower()), after)


def capture(name: str, capture_id: int) -> dict[str, Any] | None:
    """One kept exchange of `name` in detail (heads, kept bodies in base64); None when
    there is no such tunnel or capture (dropped, or never kept)."""
    return inspector.detail(get_registry().get(name.lower()), capture_id)


async def replay(name: str, capture_id: int, edits: dict[str, Any]) -> dict[str, Any]:
    """Send capture `capture_id` of `name` again through the tunnel, with `edits` (method,
    path, headers, body_b64; protocol.INSPECT_PATH), and return the new exchange's detail.
    Raises ReplayError(status, message) for what the site answers with a JSON error (a TCP
    tunnel's: 404, it keeps no exchanges)."""
    tunnel = get_registry().get(name.lower())
    if tunnel is not None and tunnel.tcp is not None:
        raise ReplayError(404, tcp_refusal(tunnel))
    return await inspector.replay(tunnel, capture_id, edits)


# --- the account page (tunnels/account.py) --------------------------------------------------------
@dataclass(frozen=True)
class AccountTunnel:
    """One of a user's live tunnels as their account page shows it: plain values, the rules
    summarised without a secret (how many users, networks), its own last hour per minute."""

    name: str
    client_ip: str
    sockets: int
    max_sockets: int
    counts: Counts
    opened_at: float  # Unix time
    rules: tuple[str, ...] | None  # None: not known here (another node's tunnel)
    minutes: tuple[Minute, ...]  # fresh copies (relay/traffic.py), oldest first
    tcp_port: int = 0  # a TCP tunnel's public port; 0: an HTTP tunnel
    tcp_connections: int = 0  # its visitor connections open now


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _rules_in_force(tunnel: Tunnel) -> tuple[str, ...]:
    """The tunnel's visitor rules in words, e.g. ("password (2 users)", "deny 1 network"),
    never a password or an address. Empty: anyone may visit."""
    access = tunnel.access
    if access is None:
        return ()
    rules = []
    if access.basic:
        rules.append(f"password ({_plural(len(access.basic), 'user', 'users')})")
    if allowed := sum(len(group) for group in access.allow):
        rules.append(f"allow {_plural(allowed, 'network', 'networks')}")
    if access.deny:
        rules.append(f"deny {len(access.deny)}")
    if access.team:
        rules.append("team only")
    if access.warning:
        rules.append("warning page")
    return tuple(rules)


def account_tunnels(user_id: int) -> list[AccountTunnel]:
    """The live tunnels of `user_id` on this relay, by name (call it on the relay's event
    loop): one pass over the registry, nothing per request."""
    traffic, now = get_traffic(), time.time()
    mine = [t for t in get_registry().tunnels.values() if t.user_id == user_id]
    return [
        AccountTunnel(
            name=tunnel.name,
            client_ip=tunnel.client_ip,
            sockets=tunnel.connected_sockets,
            max_sockets=tunnel.max_conn_count,
            counts=Counts(tunnel.requests, tunnel.bytes_in, tunnel.bytes_out),
            opened_at=tunnel.opened_at,
            rules=_rules_in_force(tunnel),
            minutes=tuple(traffic.tunnel_history(tunnel, now)),
            tcp_port=_tcp_port(tunnel),
            tcp_connections=_tcp_connections(tunnel),
        )
        for tunnel in sorted(mine, key=lambda tunnel: tunnel.name)
    ]
