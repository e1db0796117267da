"""What an idle tunnel leaves for the cyclic GC to walk, and what it keeps alive.

Idle tunnels live for hours, so every object one of them holds is in the GC's oldest
generation, walked by every full collection: 1,000 tunnels of 10 pool sockets each made
~84,000 objects there before issue 17. Here real pool listeners (relay/pool/ports.py's
`listen`, as the registry opens them) on uvloop, the relay's loop, take real loopback
connections, and the GC-tracked objects they add are counted and held under a bound
worked out from the design below; a regression (a per-socket dict, deque or closure, a
callback kept per socket) fails it.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import socket
import weakref

import uvloop
from harness.pool_listener import LoopRegistry
from harness.waiting import IO_TIMEOUT_S, wait_until_async

from relay.pool.ports import listen
from relay.pool.quota import Quota
from relay.pool.registry import Registry
from relay.pool.tunnel import Tunnel

TUNNELS = 20
SOCKETS = 10  # the default max_conn_count

# The design's count of GC-tracked objects, per pool socket: the PoolSocket (slotted, its
# inbox made with its first bytes), and uvloop's own: the transport, its write buffer (a
# list), the protocol's data_received it keeps as a bound method, the loop's weak reference
# to the transport, and the socket stand-in `get_extra_info("socket")` makes and caches.
PER_SOCKET = 1 + 5
# Per tunnel: the Tunnel and its `connections` set, `idle` and `waiters` lists; its listener:
# uvloop's Server, its TCPServer, the Server's two lists, the socket stand-in of
# `server.sockets`, the listener's (empty) context and the protocol factory (a bound method).
PER_TUNNEL = 4 + 7
# The loop's own objects in flight while it is counted (a task's weak reference and wake-up,
# about one of each per listener made), spread over the tunnels.
SLACK = 2
BOUND = PER_TUNNEL + SOCKETS * PER_SOCKET + SLACK


class ListenRegistry(LoopRegistry):
    """The parts of the registry a tunnel and `listen` read, with real settings values."""

    def __init__(self) -> None:
        super().__init__(RELAY_POOL_BIND="127.0.0.1", RELAY_POOL_PORTS=None)


async def _open(registry: ListenRegistry, index: int) -> Tunnel:
    tunnel = Tunnel(
        name=f"idle-{index:04d}",
        owner="ip:127.0.0.1",
        client_ip="127.0.0.1",
        max_conn_count=SOCKETS,
        registry=registry,  # type: ignore[arg-type]
    )
    tunnel.server = await listen(tunnel, registry.settings, {})
    tunnel.port = tunnel.server.sockets[0].getsockname()[1]
    return tunnel


def _tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_an_idle_tunnel_with_its_pool_sockets_stays_under_its_count_of_tracked_objects() -> None:
    async def scenario() -> float:
        registry = ListenRegistry()
        # The clients' sockets are made before the first count: connecting them adds none.
        clients = [socket.socket() for _ in range(TUNNELS * SOCKETS)]
        # First-use allocations (the loop's tables) are not a tunnel's.
        tunnels: list[Tunnel] = [await _open(registry, -1)]
        before = _tracked()
        try:
            for index in range(TUNNELS):
                tunnels.append(await _open(registry, index))
            measured = tunnels[1:]
            for index, client in enumerate(clients):
                client.setblocking(False)
                try:
                    client.connect(("127.0.0.1", measured[index // SOCKETS].port))
                except BlockingIOError:
                    pass  # completes in the background; the tunnel counts it once accepted
            await wait_until_async(
                lambda: all(t.connected_sockets == SOCKETS for t in measured),
                message=f"{TUNNELS} tunnels to hold {SOCKETS} pool sockets each",
            )
            return (_tracked() - before) / TUNNELS
        finally:
            for client in clients:
                client.close()
            for tunnel in tunnels:
                tunnel.close("test over")
            async with asyncio.timeout(IO_TIMEOUT_S):
                for tunnel in tunnels:
                    assert tunnel.server is not None
                    await tunnel.server.wait_closed()

    per_tunnel = uvloop.run(scenario())
    assert per_tunnel <= BOUND, (
        f"an idle tunnel with {SOCKETS} pool sockets adds {per_tunnel:.1f} GC-tracked objects; "
        f"the design allows {BOUND} ({PER_TUNNEL} + {SOCKETS} x {PER_SOCKET} + {SLACK})"
    )


class Request:
    """Stands for what a registration's context holds: its request, asgiref's executor."""


_REQUEST: contextvars.ContextVar[Request] = contextvars.ContextVar("request")


def test_a_tunnel_keeps_nothing_of_the_request_that_registered_it() -> None:
    """The loop keeps the context a listener or a timer is made in for as long as they live:
    made in the registration's, an idle tunnel kept that whole request alive for hours."""

    async def scenario() -> None:
        registry = ListenRegistry()
        holder = Registry()  # its schedule_expiry, on the relay's settings

        async def register() -> tuple[weakref.ref[Request], Tunnel, Quota]:
            request = Request()
            _REQUEST.set(request)
            tunnel = await _open(registry, 0)
            holder.schedule_expiry(tunnel)  # the grace-period timer, until a socket attaches
            quota = Quota(0, 0, 0, idle_timeout_s=60)
            quota.start_idle_timer(tunnel)
            return weakref.ref(request), tunnel, quota

        # A task of its own: its context, like a request's, ends with it.
        request, tunnel, quota = await asyncio.get_running_loop().create_task(register())
        try:
            assert tunnel.expiry is not None and quota.idle_timer is not None
            await asyncio.sleep(0)  # the loop lets go of the task's last step
            gc.collect()
            assert request() is None, "the tunnel's listener or timers keep its request alive"
        finally:
            quota.cancel_idle_timer()
            tunnel.close("test over")

    uvloop.run(scenario())
