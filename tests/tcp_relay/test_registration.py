"""A TCP tunnel's registration on the relay (relay.face.register with a TcpAsk): its public
port from RELAY_TCP_PORTS, the refusals, reclaims and the values the site reads.

The relay's objects run in this process on real loopback sockets; the session rows go to a
recording double of relay.records (what the registry writes is what is checked), except in
the test of tunnels/store.py itself, which writes a real row.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from harness.accounts import upgraded_pool_connection
from harness.waiting import wait_until_async

from bench.tcp_scenario import free_port_range
from relay import face, records
from relay.pool.registry import get_registry, reset_registry
from relay.traffic import get_traffic, snapshot
from tunnels import store
from tunnels.models import TunnelSession

QUOTA = face.PlanQuota(per_minute=0, per_day_bytes=0, max_body_bytes=0, idle_timeout_s=0)
WAIT_S = 5.0
# Listens on 127.0.0.1:<argv[1]>, says so, and holds the port until its stdin closes.
LISTENER = (
    "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
    "s.listen(); print('listening', flush=True); sys.stdin.read()"
)


class RecordedRows:
    """relay.records with the session rows kept in a list (nothing else is written)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def open_session(self, **row: Any) -> int:
        self.rows.append(row)
        return len(self.rows)

    def apply_updates(self, updates: list[Any]) -> None:
        pass


@pytest.fixture
def rows() -> Iterator[RecordedRows]:
    real = records.get()
    recorded = RecordedRows()
    records.install(recorded)  # type: ignore[arg-type]
    reset_registry()
    try:
        yield recorded
    finally:
        records.install(real)
        reset_registry()


def free_range(size: int) -> tuple[int, int]:
    """`size` consecutive ports free on loopback now (bound and let go), as RELAY_TCP_PORTS."""
    first, last = map(int, free_port_range(size).split("-"))
    return first, last


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


async def register(
    name: str | None,
    tcp: face.TcpAsk | None = None,
    *,
    owner: str = "user:7",
    user_id: int | None = 7,
    client_id: str = "lt-run-1",
    inspect: bool = False,
    raw_pool: bool = False,
) -> face.Registration:
    return await face.register(
        name,
        owner=owner,
        client_ip="127.0.0.1",
        max_sockets=10,
        user_id=user_id,
        token_id=None,
        live_limit=0,
        client_id=client_id,
        takeover=False,
        reserved=frozenset(),
        quota=QUOTA,
        raw_pool=raw_pool,
        inspect=inspect,
        tcp=tcp,
    )


async def refused(name: str | None, tcp: face.TcpAsk | None = None, **kw: Any) -> Any:
    with pytest.raises(face.RegistrationError) as caught:
        await register(name, tcp, **kw)
    return caught.value


async def closed() -> None:
    await get_registry().shutdown("test over")


def test_it_refuses_tcp_with_403_when_the_relay_offers_none(rows: RecordedRows) -> None:
    async def scenario() -> None:
        error = await refused("db", face.TcpAsk())
        assert error.status == 403
        assert error.message == (
            "This relay does not offer TCP tunnels (its operator has not set RELAY_TCP_PORTS)."
        )
        assert get_registry().get("db") is None and rows.rows == []

    asyncio.run(scenario())


def test_a_tcp_tunnel_gets_a_listening_port_of_the_range_recorded_in_its_row(
    rows: RecordedRows, settings: Any
) -> None:
    first, last = settings.RELAY_TCP_PORTS = free_range(8)

    async def scenario() -> None:
        try:
            answer = await register("db", face.TcpAsk(), inspect=True)
            assert first <= answer.tcp_port <= last
            assert answer.port == 0, "no raw pool listener for our lt"
            tunnel = get_registry().get("db")
            assert tunnel is not None and tunnel.tcp is not None
            assert tunnel.tcp.port == answer.tcp_port
            assert tunnel.captures is None, "a TCP tunnel keeps no exchanges"
            assert rows.rows[-1]["tcp_port"] == answer.tcp_port
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", answer.tcp_port), WAIT_S
            )
            writer.close()
            http = await register("web")
            assert http.tcp_port == 0 and rows.rows[-1]["tcp_port"] is None
        finally:
            await closed()

    asyncio.run(scenario())


def test_the_asked_port_is_given_and_one_held_by_another_tunnel_is_refused(
    rows: RecordedRows, settings: Any
) -> None:
    first, last = settings.RELAY_TCP_PORTS = free_range(4)

    async def scenario() -> None:
        try:
            answer = await register("db", face.TcpAsk(port=last))
            assert answer.tcp_port == last
            error = await refused("db2", face.TcpAsk(port=last), client_id="lt-run-2")
            assert (error.status, error.message) == (
                409,
                f"Port {last} is in use by another tunnel.",
            )
            outside = await refused("db3", face.TcpAsk(port=last + 1))
            assert outside.status == 400 and f"RELAY_TCP_PORTS={first}-{last}" in outside.message
        finally:
            await closed()

    asyncio.run(scenario())


def test_a_port_another_program_listens_on_is_refused_with_409(
    rows: RecordedRows, settings: Any
) -> None:
    port, _ = settings.RELAY_TCP_PORTS = free_range(1)
    other = subprocess.Popen(  # another program listening on the range's one port
        [sys.executable, "-c", LISTENER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None and other.stdout.readline() == "listening\n"

    async def scenario() -> None:
        try:
            error = await refused("db", face.TcpAsk(port=port))
            assert (error.status, error.message) == (
                409,
                f"Port {port} is taken on this relay by another program; ask for another.",
            )
            full = await refused("db", face.TcpAsk())  # the only port of the range
            assert full.status == 503
            assert get_registry().get("db") is None and rows.rows == []
        finally:
            await closed()

    try:
        asyncio.run(scenario())
    finally:
        other.kill()
        other.communicate(timeout=WAIT_S)  # reaped, its pipes closed


def test_a_third_tunnel_on_a_range_of_two_gets_503(rows: RecordedRows, settings: Any) -> None:
    first, last = settings.RELAY_TCP_PORTS = free_range(2)

    async def scenario() -> None:
        try:
            one = await register("db1", face.TcpAsk())
            two = await register("db2", face.TcpAsk(), client_id="lt-run-2")
            assert {one.tcp_port, two.tcp_port} == {first, last}
            error = await refused("db3", face.TcpAsk(), client_id="lt-run-3")
            assert error.status == 503 and error.retry_after
            assert error.message == (
                f"All 2 TCP ports of this relay (RELAY_TCP_PORTS={first}-{last}) are in use; "
                "try again later (operator: widen the range)."
            )
            assert get_registry().get("db3") is None
        finally:
            await closed()

    asyncio.run(scenario())


def test_the_port_is_held_through_the_grace_period_then_freed(
    rows: RecordedRows, settings: Any
) -> None:
    settings.RELAY_TCP_PORTS = free_range(4)
    settings.RELAY_GRACE_S = 1.0  # what the test is about: the port outlives its client by it

    async def scenario() -> None:
        try:
            answer = await register("db", face.TcpAsk())
            tunnel = get_registry().get("db")
            assert tunnel is not None
            _, writer = await upgraded_pool_connection(tunnel)
            await wait_until_async(lambda: tunnel.connected_sockets == 1, WAIT_S)
            writer.close()  # the client is gone: its grace period starts
            await wait_until_async(lambda: tunnel.connected_sockets == 0, WAIT_S)
            assert not bindable(answer.tcp_port), "the port is kept for the owner"
            again = await register("db", face.TcpAsk())  # the owner within grace
            assert again.tcp_port == answer.tcp_port
            assert get_registry().get("db") is tunnel
            await wait_until_async(
                lambda: get_registry().get("db") is None, WAIT_S, "the grace period to end"
            )
            await wait_until_async(
                lambda: bindable(answer.tcp_port), WAIT_S, "the listener to close"
            )
        finally:
            await closed()

    asyncio.run(scenario())


def test_a_name_of_one_kind_is_refused_to_the_other_kind(rows: RecordedRows, settings: Any) -> None:
    settings.RELAY_TCP_PORTS = free_range(4)

    async def scenario() -> None:
        try:
            await register("db", face.TcpAsk())
            await register("web")
            as_http = await refused("db")
            assert as_http.status == 409
            assert as_http.message.startswith("The name 'db' is held by a TCP tunnel")
            as_tcp = await refused("web", face.TcpAsk())
            assert as_tcp.status == 409
            assert as_tcp.message.startswith("The name 'web' is held by an HTTP tunnel")
        finally:
            await closed()

    asyncio.run(scenario())


def test_max_live_refuses_a_new_tcp_tunnel_but_not_a_reclaim(
    rows: RecordedRows, settings: Any
) -> None:
    settings.RELAY_TCP_PORTS = free_range(4)
    limit = face.TcpAsk(max_live=1)

    async def scenario() -> None:
        try:
            first = await register("db", limit)
            await register("web")  # HTTP tunnels do not count
            error = await refused("db2", limit, client_id="lt-run-2")
            assert (error.status, error.message) == (
                429,
                "You already have 1 live TCP tunnel, the most your plan allows. "
                "Close one (stop its lt) first.",
            )
            again = await register("db", limit)  # the owner's reclaim
            assert again.tcp_port == first.tcp_port
            other = await register("db2", limit, owner="user:8", user_id=8)  # another owner
            assert other.tcp_port
        finally:
            await closed()

    asyncio.run(scenario())


def test_status_account_and_dashboard_values_carry_the_port_and_connections(
    rows: RecordedRows, settings: Any
) -> None:
    settings.RELAY_TCP_PORTS = free_range(4)

    class Visitor:
        def abort(self, reason: str) -> None:
            pass

    async def scenario() -> None:
        try:
            answer = await register("db", face.TcpAsk())
            await register("web")
            tunnel = get_registry().get("db")
            assert tunnel is not None and tunnel.tcp is not None
            tunnel.tcp.visitors.update({Visitor(), Visitor()})  # what TcpVisitor adds
            tunnel.requests = 2  # visitor connections so far (TcpVisitor counts them)
            status = face.tunnel_status("db")
            assert status is not None
            assert (status.tcp_port, status.tcp_connections) == (answer.tcp_port, 2)
            web = face.tunnel_status("web")
            assert web is not None and (web.tcp_port, web.tcp_connections) == (0, 0)
            mine = {t.name: t for t in face.account_tunnels(7)}
            assert (mine["db"].tcp_port, mine["db"].tcp_connections) == (answer.tcp_port, 2)
            assert mine["db"].counts.requests == 2
            assert (mine["web"].tcp_port, mine["web"].tcp_connections) == (0, 0)
            live = {t.name: t for t in snapshot(get_registry(), get_traffic(), 0.0).live}
            assert (live["db"].tcp_port, live["db"].tcp_connections) == (answer.tcp_port, 2)
            assert (live["web"].tcp_port, live["web"].tcp_connections) == (0, 0)
        finally:
            await closed()

    asyncio.run(scenario())


def test_a_tcp_tunnel_refuses_a_replay_with_the_tcp_answer(
    rows: RecordedRows, settings: Any
) -> None:
    settings.RELAY_TCP_PORTS = free_range(2)

    async def scenario() -> None:
        try:
            answer = await register("db", face.TcpAsk(), inspect=True)
            assert not face.inspecting("db") and face.captures("db") is None
            with pytest.raises(face.ReplayError) as caught:
                await face.replay("db", 1, {})
            assert caught.value.status == 404
            assert f":{answer.tcp_port} with a TCP client" in caught.value.message
        finally:
            await closed()

    asyncio.run(scenario())


@pytest.mark.django_db
def test_the_store_writes_the_session_rows_tcp_port() -> None:
    common = {"client_ip": "127.0.0.1", "port": 0, "max_sockets": 10}
    tcp_row = store.open_session(subdomain="db", tcp_port=20001, **common)
    http_row = store.open_session(subdomain="web", **common)
    assert TunnelSession.objects.get(pk=tcp_row).tcp_port == 20001
    assert TunnelSession.objects.get(pk=http_row).tcp_port is None


def test_the_relays_shutdown_closes_every_tcp_listener(rows: RecordedRows, settings: Any) -> None:
    """runrelay's SIGTERM path ends in Registry.shutdown, which closes every tunnel."""
    settings.RELAY_TCP_PORTS = free_range(4)

    async def scenario() -> None:
        ports = [
            (await register(f"db{n}", face.TcpAsk(), client_id=f"lt-run-{n}")).tcp_port
            for n in range(3)
        ]
        assert not any(bindable(port) for port in ports)
        await get_registry().drain(WAIT_S)
        await get_registry().shutdown("relay stopped")
        assert all(bindable(port) for port in ports), "a TCP listener outlived the relay"

    asyncio.run(scenario())


def test_registrations_at_once_cannot_pass_max_live_together(
    rows: RecordedRows, settings: Any
) -> None:
    settings.RELAY_TCP_PORTS = free_range(4)
    limit = face.TcpAsk(max_live=1)

    async def scenario() -> None:
        try:
            results = await asyncio.gather(
                register("db1", limit, client_id="lt-run-1"),
                register("db2", limit, client_id="lt-run-2"),
                return_exceptions=True,
            )
            refusals = [r for r in results if isinstance(r, face.RegistrationError)]
            assert [r.status for r in refusals] == [429], results
            assert sum(1 for t in get_registry().tunnels.values() if t.tcp is not None) == 1
        finally:
            await closed()

    asyncio.run(scenario())


def test_a_raw_pool_tcp_tunnel_gets_its_raw_pool_port_too(
    rows: RecordedRows, settings: Any
) -> None:
    """lt tcp --raw-pool: the raw pool port then carries frames like an upgraded one."""
    settings.RELAY_TCP_PORTS = free_range(2)

    async def scenario() -> None:
        try:
            answer = await register("db", face.TcpAsk(), raw_pool=True)
            assert answer.port and answer.tcp_port and answer.port != answer.tcp_port
            assert rows.rows[-1]["port"] == answer.port
            assert rows.rows[-1]["tcp_port"] == answer.tcp_port
        finally:
            await closed()

    asyncio.run(scenario())
