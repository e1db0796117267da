"""A plan's bandwidth (Plan.max_bytes_per_second, RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND) on a
real relay, with our lt, the npm client, `lt tcp` and real local apps: bytes per second per
account on the relay, each direction, all its tunnels together, applied as backpressure.

Times are measured with the monotonic clock around each transfer and asserted within a band:
the behaviour (the rate holds, the bytes arrive whole), not a benchmark. A new account's
bucket starts full (one second's worth, relay.protocol.BANDWIDTH_BURST_S), so 10 MiB at
1 MiB/s take about 9 s; each test uses accounts of its own, whose buckets nothing else drew."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from harness.http import TRANSFER_TIMEOUT_S, timed_download
from harness.our_client import OurLt, OurLtLauncher
from harness.proc import rss_kib
from harness.processes import ProcessGroup
from harness.relay import LocalApp, LtLauncher, Relay
from harness.tcp_tunnels import (
    LtTcpLauncher,
    free_port_range,
    make_plan_user,
    start_tcp_app,
)
from harness.waiting import unique_name
from websockets.asyncio.client import connect

from bench import tcp_transfer

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
RATE = MIB  # the limited plans' bytes per second
BIG = 10 * MIB


def pattern(n: int) -> bytes:
    """tests/apps/local_app.py's /bytes/N body."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


@pytest.fixture(scope="module")
def relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    """The default plan (anonymous tunnels: the npm client) at 1 MiB/s, the setting this
    file is about; RELAY_TCP_PORTS because TCP tunnels are off without it."""
    return module_relay_factory(
        RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND=RATE, RELAY_TCP_PORTS=free_port_range(4)
    )


@pytest.fixture(scope="module")
def token(relay: Relay) -> Callable[[int], str]:
    """A new user on a plan of its own with `rate` bytes per second (0: no limit)."""

    def make(rate: int) -> str:
        return make_plan_user(relay.env, unique_name("bw"), max_bytes_per_second=rate)

    return make


@pytest.fixture(scope="module")
def our_lt(
    relay: Relay, local_app: LocalApp, our_launcher: OurLtLauncher
) -> Callable[[str], OurLt]:
    return lambda token: our_launcher(relay, local_app.port, "--token", token)


def download(relay: Relay, name: str, size: int) -> tuple[float, str, int]:
    """GET /bytes/<size> through the tunnel: (seconds, sha256, length) as the visitor read it."""
    return timed_download(relay.port, relay.host(name), size)


def echo_socket(relay: Relay, name: str) -> Any:
    """A WebSocket to the tunnel's echo app (`/ws`), taking messages up to 2 MiB."""
    return connect(
        f"ws://{name}.localhost:{relay.port}/ws",
        host="127.0.0.1",
        port=relay.port,
        proxy=None,
        max_size=2 * MIB,
    )


def whole(size: int) -> str:
    return hashlib.sha256(pattern(size)).hexdigest()


def test_a_10_mib_download_at_1_mib_per_second_takes_about_10_s_and_arrives_whole(
    relay: Relay, our_lt: Callable[[str], OurLt], token: Callable[[int], str]
) -> None:
    lt = our_lt(token(RATE))
    seconds, digest, length = download(relay, lt.name, BIG)
    assert (length, digest) == (BIG, whole(BIG))
    assert 8.0 <= seconds <= 14.0, seconds


def test_a_10_mib_upload_at_1_mib_per_second_takes_about_10_s_and_arrives_whole(
    relay: Relay, local_app: LocalApp, module_lt_factory: LtLauncher
) -> None:
    """The npm client's tunnel is anonymous: the default plan's rate. The visitor's body is
    spooled by the relay as fast as it comes, then written to the pool at the rate."""
    lt = module_lt_factory(relay, local_app.port)
    body = pattern(BIG)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", relay.port), timeout=TRANSFER_TIMEOUT_S) as sock:
        head = (
            f"POST /sha256 HTTP/1.1\r\nHost: {relay.host(lt.name)}\r\nContent-Length: {BIG}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        answer = b""
        while not answer.endswith(b"}"):
            piece = sock.recv(4096)
            assert piece, answer
            answer += piece
    seconds = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert f'"sha256": "{hashlib.sha256(body).hexdigest()}", "length": {BIG}'.encode() in answer
    assert 8.0 <= seconds <= 14.0, seconds
    lt.stop()


def test_two_tunnels_of_one_account_share_its_rate(
    relay: Relay, our_lt: Callable[[str], OurLt], token: Callable[[int], str]
) -> None:
    """5 MiB through each of two tunnels at once: 10 MiB of the account's, about 9 s for
    both (alone, 5 MiB take about 4 s)."""
    shared = token(RATE)
    first, second = our_lt(shared), our_lt(shared)
    size = BIG // 2
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda name: download(relay, name, size), [first.name, second.name])
        )
    for _, digest, length in results:
        assert (length, digest) == (size, whole(size))
    slowest = max(seconds for seconds, _, _ in results)
    assert 8.0 <= slowest <= 14.0, results
    assert min(seconds for seconds, _, _ in results) >= 6.0, results  # turns, not one first


def test_a_paced_download_longer_than_the_plans_idle_timeout_is_not_cut(
    relay: Relay, our_lt: Callable[[str], OurLt]
) -> None:
    """The plan closes tunnels idle for 2 s; a 6 MiB download at 1 MiB/s takes about 5 s
    and is one request: the relay's pacing is not idleness, the bytes all arrive."""
    lt = our_lt(
        make_plan_user(relay.env, unique_name("bw"), max_bytes_per_second=RATE, idle_timeout_s=2)
    )
    size = 6 * MIB
    seconds, digest, length = download(relay, lt.name, size)
    assert (length, digest) == (size, whole(size))
    assert seconds >= 4.0, seconds


def test_other_accounts_are_not_slowed_and_a_plan_without_a_limit_is_not_paced(
    relay: Relay, our_lt: Callable[[str], OurLt], token: Callable[[int], str]
) -> None:
    """Two limited accounts and one without a limit download at once: each limited one at
    its own 1 MiB/s (5 MiB in about 4 s, not the 9 s of a shared rate), the other at full
    speed."""
    one, two, free = our_lt(token(RATE)), our_lt(token(RATE)), our_lt(token(0))
    size = BIG // 2
    jobs = [(one.name, size), (two.name, size), (free.name, BIG)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda job: download(relay, *job), jobs))
    for (_, size_asked), (_, digest, length) in zip(jobs, results, strict=True):
        assert (length, digest) == (size_asked, whole(size_asked))
    (one_s, _, _), (two_s, _, _), (free_s, _, _) = results
    assert 3.0 <= one_s <= 7.0 and 3.0 <= two_s <= 7.0, results
    assert free_s < 3.0, results


def test_websocket_messages_are_paced_both_ways_and_arrive_whole(
    relay: Relay, our_lt: Callable[[str], OurLt], token: Callable[[int], str]
) -> None:
    """16 binary messages of 256 KiB echoed by the app: 4 MiB each way, each direction at
    1 MiB/s of its own (the second waits on the first), so about 3 s, not a fraction of one."""
    lt = our_lt(token(RATE))
    messages = [bytes([i]) * (256 * 1024) for i in range(16)]

    async def session() -> tuple[float, list[bytes]]:
        async with asyncio.timeout(TRANSFER_TIMEOUT_S):
            async with echo_socket(relay, lt.name) as ws:
                started = time.monotonic()

                async def send_all() -> None:
                    for message in messages:
                        await ws.send(message)

                sender = asyncio.ensure_future(send_all())
                echoes = [await ws.recv() for _ in messages]
                await sender
                return time.monotonic() - started, echoes  # type: ignore[return-value]

    seconds, echoes = asyncio.run(session())
    assert echoes == messages
    assert 2.5 <= seconds <= 10.0, seconds


def test_websocket_text_is_paced_by_its_utf8_bytes_not_its_characters(
    relay: Relay, our_lt: Callable[[str], OurLt], token: Callable[[int], str]
) -> None:
    """The app sends 8 text messages of 128 Ki euro signs (3 bytes each in UTF-8): 3 MiB to
    the visitor on the wire, so about 2 s past the 1 MiB burst; counted as characters (1 MiB)
    they would all pass within the burst at once. The visitor's one message (the app's
    `repeat-app:N:T`) is within the other direction's burst."""
    lt = our_lt(token(RATE))
    text = chr(0x20AC) * (128 * 1024)
    assert len(text.encode()) * 8 == 3 * MIB

    async def session() -> tuple[float, list[str]]:
        async with asyncio.timeout(TRANSFER_TIMEOUT_S):
            async with echo_socket(relay, lt.name) as ws:
                started = time.monotonic()
                await ws.send(f"repeat-app:8:{text}")
                messages = [await ws.recv() for _ in range(8)]
                return time.monotonic() - started, messages  # type: ignore[return-value]

    seconds, messages = asyncio.run(session())
    assert messages == [text] * 8
    assert 1.5 <= seconds <= 8.0, seconds


@pytest.fixture(scope="module")
def tcp_app(module_group: ProcessGroup) -> int:
    return start_tcp_app(module_group)


@pytest.fixture(scope="module")
def lt_tcp(module_group: ProcessGroup, tmp_path_factory: pytest.TempPathFactory) -> LtTcpLauncher:
    return LtTcpLauncher(module_group, tmp_path_factory.mktemp("lt-tcp-config"))


def test_a_tcp_tunnel_is_paced_both_ways_and_its_bytes_arrive_whole(
    relay: Relay, tcp_app: int, lt_tcp: LtTcpLauncher, token: Callable[[int], str]
) -> None:
    """6 MiB each way, one after the other, through `lt tcp`: about 5 s each."""
    lt = lt_tcp(f"http://localhost:{relay.port}", tcp_app, "--token", token(RATE))
    size = 6 * MIB
    started = time.monotonic()
    down = tcp_transfer.download(lt.port, size)
    down_s = time.monotonic() - started
    assert (down.bytes, down.sha256_ok) == (size, True)
    started = time.monotonic()
    up = tcp_transfer.upload(lt.port, size)
    up_s = time.monotonic() - started
    assert up.sha256_ok
    assert 4.0 <= down_s <= 10.0, down_s
    assert 4.0 <= up_s <= 10.0, up_s
    lt.process.stop()


def test_the_relay_holds_little_while_a_fast_app_is_held_back(
    relay: Relay, our_lt: Callable[[str], OurLt], token: Callable[[int], str]
) -> None:
    """The app answers 64 MiB at once; the relay passes 1 MiB/s on and reads the pool socket
    only as it does (its inbox stops at READ_HIGH_WATER), so after 4 MiB reached the visitor
    the relay holds a few MiB more than before, not the 60 MiB the app is pushing."""
    lt = our_lt(token(RATE))
    pid = relay.process.pid
    before = rss_kib(pid)
    size = 64 * MIB
    with socket.create_connection(("127.0.0.1", relay.port), timeout=TRANSFER_TIMEOUT_S) as sock:
        sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: {relay.host(lt.name)}\r\n\r\n".encode())
        received = 0
        started = time.monotonic()
        while received < 4 * MIB:
            piece = sock.recv(256 * 1024)
            assert piece
            received += len(piece)
        seconds = time.monotonic() - started
        grown_mib = (rss_kib(pid) - before) / 1024
    assert seconds >= 2.0, seconds  # held back: 4 MiB is a 1 MiB burst and 3 s of the rate
    assert grown_mib < 16, grown_mib
