"""This relay as one node of several on one database and one Redis (RELAY_NODE_NAME set).

- Heartbeat: every RELAY_HEARTBEAT_S the node writes its `Node` row (address, load,
  draining), closes the sessions of nodes silent for RELAY_NODE_EXPIRY_S ("node gone"),
  closes its own tunnels whose rows another node closed that way (it was presumed dead, so
  the name may already live elsewhere), and reloads the directory of who owns which name.
- Directory: name -> owner's HOST:PORT, in memory. Reloaded with each heartbeat, and updated
  at once by `tunnel.owner` messages every node sends on the `relay-control` group when it
  opens or closes a tunnel. A visitor's miss in the local registry is a dictionary lookup,
  never a query; a name the directory does not know is a 404.
- Forwarding: the cluster's Forwarder (relay/cluster/forward.py) sends a request through
  relay/cluster/peer_proxy.py to the owner's public listener, with a signed hop marker; the
  same for a client's `DELETE /api/tunnels/<name>` and its `/status` (`forward_api`).
- Reclaiming: a client registering its own name while another node still holds it (grace
  period, or still connected) gets it here: that node is asked to release it (`release`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from relay import database, records
from relay.asgi_types import Receive, Scope, Send
from relay.cluster.forward import Forwarder
from relay.cluster.peer_pool import PeerPool
from relay.pool.registry import Registry
from relay.pool.tunnel import Tunnel
from relay.protocol import (
    ANNOUNCE_TIMEOUT_S,
    CLOSE_REASON_MAX_CHARS,
    CLUSTER_STOP_S,
    CONTROL_GROUP,
    HEARTBEAT_MIN_TIMEOUT_S,
    HIGHEST_PORT,
)
from relay.records import NodeLoad
from relay.tasks import background

logger = logging.getLogger(__name__)

PRESUMED_DEAD = "node presumed dead"


def parse_address(value: str, name: str = "RELAY_ADVERTISE") -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8080`) -> (host, port); ImproperlyConfigured if not."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= HIGHEST_PORT:
        raise ImproperlyConfigured(f"{name}={value!r} must look like HOST:PORT, e.g. 10.0.0.5:8080")
    if host in {"0.0.0.0", "::"}:
        raise ImproperlyConfigured(f"{name}={value!r}: peers cannot connect to a wildcard address")
    return host, int(port)


def _beat(
    name: str, advertise: str, started_at: Any, draining: bool, load: NodeLoad, ids: list[int]
) -> tuple[dict[str, int], list[int], dict[str, str]]:
    """One heartbeat's database work, in one thread hop."""
    expiry = django_settings.RELAY_NODE_EXPIRY_S
    db = records.get()
    db.heartbeat(name, advertise, started_at, draining, load)
    reaped = db.reap_dead_nodes(name, expiry)
    fenced = db.closed_among(ids)
    return reaped, fenced, db.directory(name, expiry)


class Cluster:
    def __init__(self, registry: Registry, node: str, advertise: str) -> None:
        self.registry = registry
        self.settings = registry.settings
        self.node = node
        self.advertise = advertise
        self.advertise_host = parse_address(advertise)[0]
        scheme = self.settings.RELAY_PUBLIC_SCHEME
        self.node_url: str = self.settings.RELAY_NODE_URL or f"{scheme}://{advertise}"
        self.started_at = timezone.now()
        self.draining = False
        self.forwarder = Forwarder(self)  # to the owner node of a name held elsewhere
        self.closed_requests = 0
        self.peers = PeerPool(self.settings.RELAY_PEER_CONNECT_S)
        self.routes: dict[str, str] = {}
        # From `tunnel.owner` messages: newer than the last snapshot until they expire.
        self.recent: dict[str, tuple[str | None, float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beater: asyncio.Task[None] | None = None
        self._flush_pending = False

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """First heartbeat (raises if the database is unreachable), then one per period."""
        await self.beat()
        self._beater = background(self._beat_forever())

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.RELAY_HEARTBEAT_S)
            try:
                async with asyncio.timeout(
                    max(self.settings.RELAY_NODE_EXPIRY_S, HEARTBEAT_MIN_TIMEOUT_S)
                ):
                    await self.beat()
            except Exception:
                logger.exception("heartbeat failed; will retry")

    async def beat(self) -> None:
        started = time.monotonic()
        live = [t for t in self.registry.tunnels.values() if t.session_id is not None]
        load = NodeLoad(
            tunnels=len(self.registry.tunnels),
            sockets=sum(t.connected_sockets for t in self.registry.tunnels.values()),
            in_flight=max(0, self.registry.in_flight),
            requests=self.closed_requests + sum(t.requests for t in self.registry.tunnels.values()),
            forwarded=self.forwarder.forwarded,
        )
        reaped, fenced, snapshot = await database.call(
            _beat,
            self.node,
            self.advertise,
            self.started_at,
            self.draining,
            load,
            [t.session_id for t in live],
        )
        for name, count in reaped.items():
            logger.warning("node %s is silent: closed its %d live session(s)", name, count)
        if fenced:
            gone = set(fenced)
            for tunnel in live:
                if tunnel.session_id in gone:
                    self.registry.close(tunnel, PRESUMED_DEAD)
        self._install(snapshot, started)

    def _install(self, snapshot: dict[str, str], taken_at: float) -> None:
        now = time.monotonic()
        self.recent = {k: v for k, v in self.recent.items() if v[1] > now}
        self.routes = snapshot
        logger.debug("directory: %d remote tunnel(s), took %.3f s", len(snapshot), now - taken_at)

    async def drain(self) -> None:
        """Refuse new tunnels, answer /healthz with 503, and say so in the Node row."""
        self.draining = True
        self.registry.accepting = False
        try:
            await database.call(records.get().mark_draining, self.node)
        except Exception:
            logger.exception("could not mark node %s as draining", self.node)

    async def stop(self, timeout: float = CLUSTER_STOP_S) -> None:
        """Stop heartbeats; give the last announcements (names closed) a moment to go out."""
        if self._beater is not None:
            self._beater.cancel()
            self._beater = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        self.peers.close()

    def health(self) -> tuple[int, dict[str, Any]]:
        body = {"node": self.node, "tunnels": len(self.registry.tunnels), "draining": self.draining}
        return (503 if self.draining else 200), body

    # The proxies forward through relay.pool.hooks.ClusterHooks, which names these two.
    async def forward_http(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        await self.forwarder.forward_http(scope, receive, send, name)

    async def forward_websocket(
        self, scope: Scope, receive: Receive, send: Send, name: str
    ) -> None:
        await self.forwarder.forward_websocket(scope, receive, send, name)

    # --- the directory ----------------------------------------------------------------------
    def route(self, name: str) -> str | None:
        """HOST:PORT of the node that owns `name`, or None if no other node has it."""
        fresh = self.recent.get(name)
        if fresh is not None and fresh[1] > time.monotonic():
            return fresh[0]
        return self.routes.get(name)

    def _remember(self, name: str, address: str | None) -> None:
        # Long enough to outlive a snapshot that was taken before this news.
        keep = 2 * self.settings.RELAY_HEARTBEAT_S + self.settings.RELAY_NODE_EXPIRY_S
        self.recent[name] = (address, time.monotonic() + keep)

    def forget(self, name: str) -> None:
        """A forward found the route stale: drop it until news or the next snapshot."""
        self.routes.pop(name, None)
        self.recent.pop(name, None)

    def note_owner(self, message: dict[str, Any]) -> None:
        """A `tunnel.owner` message from a node (relay/cluster/control.py)."""
        name, node = str(message.get("name") or ""), str(message.get("node") or "")
        if not name or node == self.node:
            return
        address = message.get("address")
        if address:
            self._remember(name, str(address))
        elif self.route(name) in (None, message.get("was")):
            self._remember(name, None)

    # --- reclaiming a name across nodes -------------------------------------------------------
    async def release(
        self, name: str, owner: str, client_id: str = "", takeover: bool = False
    ) -> bool:
        """The name's live row is on another node: if `owner` holds it, ask that node (a
        `tunnel.release` message) to close it. True when a retry of the insert may succeed.
        That node keeps a tunnel whose client is still connected unless this is the same
        client reconnecting or a takeover."""
        holder = await database.call(records.get().live_holder, name)
        if holder is None:
            return True  # closed meanwhile
        held_by, node = holder
        if held_by != owner or not node or node == self.node:
            return False
        logger.info("asking node %s to release %s to its owner, here", node, name)
        await self._send(
            {
                "type": "tunnel.release",
                "name": name,
                "owner": owner,
                "node": node,
                "by": self.node,
                "client_id": client_id,
                "takeover": takeover,
            }
        )
        return True

    def note_release(self, message: dict[str, Any]) -> int:
        """A `tunnel.release` message: close our tunnel if its owner is reclaiming it
        on the node that sent it. Returns how many tunnels it closed (0 or 1)."""
        tunnel = self.registry.get(str(message.get("name") or ""))
        if (
            message.get("node") != self.node
            or tunnel is None
            or tunnel.owner != message.get("owner")
        ):
            return 0
        client_id = str(message.get("client_id") or "")
        same_client = bool(client_id) and client_id == tunnel.client_id
        # An anonymous tunnel whose client is connected is never taken over: its owner is
        # an address, which anyone behind the same NAT shares.
        takeover = bool(message.get("takeover")) and tunnel.user_id is not None
        if not same_client and not takeover and tunnel.client_connected(time.monotonic()):
            return 0  # a second live client: the node that asked answers 409 after its wait
        by = str(message.get("by") or "another node")
        if takeover and not same_client:
            self.registry.remember_taken_over(tunnel, f"a client on node {by}")
        self.registry.close(tunnel, f"reclaimed on {by}"[:CLOSE_REASON_MAX_CHARS])
        return 1

    def tunnel_opened(self, tunnel: Tunnel) -> None:
        self._announce(tunnel.name, self.advertise)

    def tunnel_closed(self, tunnel: Tunnel) -> None:
        self.closed_requests += tunnel.requests
        self._announce(tunnel.name, None)
        self.flush_soon()  # free the name (and the owner's quota) cluster-wide now

    def _announce(self, name: str, address: str | None) -> None:
        message = {
            "type": "tunnel.owner",
            "name": name,
            "node": self.node,
            "address": address,
            "was": self.advertise,
        }
        self._spawn(self._send(message))

    async def _send(self, message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async with asyncio.timeout(ANNOUNCE_TIMEOUT_S):
                await layer.group_send(CONTROL_GROUP, message)
        except Exception as exc:  # the next snapshot will tell the others
            logger.warning("could not announce %s: %r", message.get("name"), exc)

    def flush_soon(self) -> None:
        if self._flush_pending:
            return
        self._flush_pending = True

        async def flush() -> None:
            self._flush_pending = False
            try:
                await self.registry.flush()
            except Exception:
                logger.exception("could not flush closed sessions; the flusher will retry")

        self._spawn(flush())

    def _spawn(self, coro: Any) -> None:
        task = background(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
