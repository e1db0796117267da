"""Control messages over Redis are never lost while the relay runs, however long it idles.

A real relay with `REDIS_URL`, tunnels held open by real pool sockets, and `tunnel.close`
messages sent to the `relay-control` group (what the admin's Disconnect and `revoketoken` send,
through channels_redis, as tunnels/control.py does) at random moments over two and a half
minutes: the gaps straddle channels_redis's 5 s blocking read and redis-py's 5 s socket
timeout, where the listener used to time out, sleep and join again on a new channel.
Every message must be obeyed: its tunnel's pool socket is closed by the relay. And when Redis
drops the relay's waiting connection, what is sent while it reconnects is obeyed too.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
import redis
from channels_redis.core import RedisChannelLayer
from harness.fake_client import FakeTunnelClient, PoolSocket
from harness.processes import PYTHON, Process
from harness.redis_index import redis_index
from harness.waiting import wait_until

from relay.cluster.control import CONTROL_GROUP

REDIS_BASE = os.environ.get("TUNNELSITE_TEST_REDIS", "redis://127.0.0.1:6379")


REDIS_INDEX = redis_index("control")  # harness/redis_index.py: one per worker and run
IDLE_S = 60.0  # how long messages keep coming: twelve of the 5 s blocking reads, idle between
GAPS_S = (0.5, 7.0)  # between two messages: across the 5 s read timeouts, never in step
OBEYED_S = 3.0  # a message is obeyed within this (on an idle relay, well under 0.1 s)

pytestmark = pytest.mark.timeout(IDLE_S + 60)


def _send_close(url: str, name: str) -> None:
    async def send() -> None:
        layer = RedisChannelLayer(hosts=[url])
        try:
            message = {"type": "tunnel.close", "names": [name], "reason": "control test"}
            await layer.group_send(CONTROL_GROUP, message)
        finally:
            await layer.close_pools()

    asyncio.run(send())


def test_every_control_message_sent_over_minutes_of_idling_is_obeyed(relay_factory):
    url = f"{REDIS_BASE}/{REDIS_INDEX}"
    relay = relay_factory(REDIS_URL=url)
    schedule = random.Random()
    seed = schedule.randrange(1 << 30)
    schedule.seed(seed)
    clients: list[FakeTunnelClient] = []
    try:
        # Ready: the relay has joined the group once a first message is obeyed.
        first = FakeTunnelClient(relay)
        clients.append(first)
        (first_pool,) = first.connect(1)
        wait_until(
            lambda: _send_close(url, first.name) or first_pool.is_closed(timeout=1.0),
            20,
            "the relay to join the control group",
        )

        count = int(IDLE_S / (sum(GAPS_S) / 2))
        pools: dict[str, PoolSocket] = {}
        for _ in range(count):
            client = FakeTunnelClient(relay)
            clients.append(client)
            (pools[client.name],) = client.connect(1)

        sent: list[tuple[str, float]] = []
        started = time.monotonic()
        for name in pools:
            time.sleep(schedule.uniform(*GAPS_S))  # the schedule under test, not a wait
            _send_close(url, name)
            sent.append((name, time.monotonic() - started))
        deadline = time.monotonic() + OBEYED_S
        lost = [
            (name, round(at, 1))
            for name, at in sent
            if not pools[name].is_closed(timeout=max(0.01, deadline - time.monotonic()))
        ]
        print(
            f"\nseed {seed}: {len(sent)} messages over {time.monotonic() - started:.0f} s, "
            f"{len(lost)} not obeyed"
        )
        assert not lost, f"seed {seed}: not obeyed (name, seconds after the first): {lost}"
        for name in pools:
            assert relay.sockets(name) is None, f"{name} is still registered"
    finally:
        for client in clients:
            client.close()


def _local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (from /proc: no tool needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _listener_connection(admin: redis.Redis, relay) -> dict:
    """Redis's entry for the relay's control listener: its connection waiting in BZPOPMIN."""

    def waiting() -> list[dict]:
        ports = _local_ports(relay.process.pid)
        return [
            c
            for c in admin.client_list()
            if c["cmd"] == "bzpopmin" and int(c["addr"].rsplit(":", 1)[1]) in ports
        ]

    (listener,) = wait_until(waiting, 10, "the relay's listener to wait on Redis")
    return listener


def test_messages_sent_while_the_relay_reconnects_to_redis_are_obeyed(relay_factory):
    """Redis drops the relay's waiting connection (a restart, a proxy's idle cut): the
    listener reconnects on the same channel, and what was sent meanwhile is still obeyed."""
    url = f"{REDIS_BASE}/{REDIS_INDEX}"
    relay = relay_factory(REDIS_URL=url)
    admin = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    clients: list[FakeTunnelClient] = []
    try:
        first = FakeTunnelClient(relay)
        clients.append(first)
        (first_pool,) = first.connect(1)
        wait_until(
            lambda: _send_close(url, first.name) or first_pool.is_closed(timeout=1.0),
            20,
            "the relay to join the control group",
        )
        for round_ in range(3):
            client = FakeTunnelClient(relay)
            clients.append(client)
            (pool,) = client.connect(1)

            admin.client_kill_filter(_id=_listener_connection(admin, relay)["id"])
            _send_close(url, client.name)  # at once: the listener is reconnecting
            assert pool.is_closed(timeout=OBEYED_S + 2.0), f"round {round_}: not obeyed"
    finally:
        admin.close()
        for client in clients:
            client.close()


BURST = 500  # more than channels_redis's default room of 100 waiting messages per channel
# Sends BURST messages once told to (a line on stdin), with the project's settings: the room a
# message meets is the sender's layer configuration. The closes come last.
BURST_SCRIPT = """
import asyncio, sys
from channels.layers import get_channel_layer
from relay.cluster.control import CONTROL_GROUP
closes = {closes}
messages = [
    {{"type": "tunnel.owner", "name": f"gone-{{i}}", "node": "other", "address": None}}
    for i in range({burst} - len(closes))
] + [{{"type": "tunnel.close", "names": [name], "reason": "control test"}} for name in closes]
async def burst():
    layer = get_channel_layer()
    queue = iter(messages)
    async def sender():
        for message in queue:
            await layer.group_send(CONTROL_GROUP, message)
    await layer.group_send("warm-up", {{"type": "x"}})
    print("ready", flush=True)
    sys.stdin.readline()
    await asyncio.gather(*(sender() for _ in range(20)))
    print("sent", flush=True)
asyncio.run(burst())
"""


def test_a_burst_of_control_messages_loses_none(relay_factory):
    """A node that stops announces every tunnel it closes (`tunnel.owner`) to every other
    node at once; closes sent after that burst, while the listener is away, must be obeyed."""
    url = f"{REDIS_BASE}/{REDIS_INDEX}"
    relay = relay_factory(REDIS_URL=url)
    admin = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    clients: list[FakeTunnelClient] = []
    try:
        first = FakeTunnelClient(relay)
        clients.append(first)
        (first_pool,) = first.connect(1)
        wait_until(
            lambda: _send_close(url, first.name) or first_pool.is_closed(timeout=1.0),
            20,
            "the relay to join the control group",
        )
        pools: dict[str, PoolSocket] = {}
        for _ in range(5):
            client = FakeTunnelClient(relay)
            clients.append(client)
            (pools[client.name],) = client.connect(1)
        script = BURST_SCRIPT.format(burst=BURST, closes=list(pools))
        sender = Process(
            [PYTHON, "manage.py", "shell", "-c", script], relay.env, "burst", subprocess.PIPE
        )
        try:
            sender.wait_for_line(r"^ready$")
            # The listener is away for a moment (as when Redis drops its connection): the
            # whole burst waits in its channel.
            admin.client_kill_filter(_id=_listener_connection(admin, relay)["id"])
            sender.send_line("go")
            sender.wait_for_line(r"^sent$")
        finally:
            sender.stop()
        deadline = time.monotonic() + OBEYED_S + 5
        lost = [
            name
            for name, pool in pools.items()
            if not pool.is_closed(timeout=max(0.01, deadline - time.monotonic()))
        ]
        assert not lost, f"{len(lost)} of 5 closes after a burst of {BURST} not obeyed"
    finally:
        admin.close()
        for client in clients:
            client.close()
