"""A visitor that never reads while the app sends: backpressure reaches the app, and the
relay's memory and lt's stay bounded (measured from /proc of each process)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from harness.proc import rss_kib
from harness.relay import Relay
from harness.tcp_tunnels import LtTcpLauncher
from harness.waiting import wait_until

from bench.tcp_transfer import connect, download, stats

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
OFFERED = 512 * MIB  # what the app would send if nothing held it back
# What may be in flight between the app and a visitor who reads nothing: the kernel's
# buffers of four sockets (app->lt, lt->relay, relay->visitor, each direction's send and
# receive buffers: a few MiB each at most on loopback with autotuning), lt's and the relay's
# own bounded buffers. Without backpressure the app would send all of OFFERED.
IN_FLIGHT_BOUND = 64 * MIB
# The relay's growth while it holds such a visitor: its inbox pauses the pool connection at
# READ_HIGH_WATER (1 MiB), one DATA frame (TCP_MAX_DATA_BYTES, 256 KiB) is parsed at a time,
# and the visitor's transport stops being written past its high-water mark (64 KiB), so the
# relay holds ~1.5 MiB for it; 16 MiB leaves room for the allocator's arenas and the
# interpreter's own churn, and is far below the 512 MiB the app offers.
RELAY_GROWTH_BOUND_KIB = 16 * 1024
# lt's growth: it reads the app 64 KiB at a time and stops while its pool connection's
# writes wait (asyncio's write buffer high-water mark, 64 KiB), so it holds about 128 KiB for
# the visitor; the same allocator slack.
LT_GROWTH_BOUND_KIB = 16 * 1024
STALL_S = 1.0  # the app's count not growing for this long: it is blocked on its socket


def stalled(port: int) -> Callable[[], bool]:
    """A predicate: has the app's sent count stayed the same for STALL_S?"""
    last = {"sent": -1, "since": time.monotonic()}

    def check() -> bool:
        sent, _ = stats(port)
        now = time.monotonic()
        if sent != last["sent"]:
            last.update(sent=sent, since=now)
            return False
        return now - last["since"] >= STALL_S

    return check


def test_a_visitor_that_never_reads_holds_the_app_back_and_the_relay_stays_small(
    lt_tcp: LtTcpLauncher,
    relay_url: str,
    tcp_relay: Relay,
    tcp_app: int,
    token_of: Callable[[], str],
) -> None:
    lt = lt_tcp(relay_url, tcp_app, "--token", token_of())
    try:
        assert download(lt.port, 16 * MIB).sha256_ok  # first-use allocations are not the bound
        pid = tcp_relay.process.pid
        before, lt_before = rss_kib(pid), rss_kib(lt.process.pid)
        sent_before, _ = stats(tcp_app)
        with connect(lt.port) as sock:
            sock.sendall(f"SEND {OFFERED}\n".encode())
            wait_until(lambda: stats(tcp_app)[0] - sent_before > MIB, 10, "the app to send")
            wait_until(stalled(tcp_app), 30, "the app to be blocked by the visitor")
            sent = stats(tcp_app)[0] - sent_before
            growth = rss_kib(pid) - before
            lt_growth = rss_kib(lt.process.pid) - lt_before
            assert sent < IN_FLIGHT_BOUND, f"the app sent {sent / MIB:.0f} MiB unread"
            assert growth < RELAY_GROWTH_BOUND_KIB, f"the relay grew by {growth} KiB"
            assert lt_growth < LT_GROWTH_BOUND_KIB, f"lt grew by {lt_growth} KiB"
            print(
                f"held back at {sent / MIB:.1f} MiB in flight; "
                f"relay +{growth} KiB, lt +{lt_growth} KiB"
            )
            # The visitor starts reading: the stream resumes where it stopped.
            received = 0
            while received < sent + 4 * MIB:
                data = sock.recv(1024 * 1024)
                assert data, "the stream ended early"
                received += len(data)
    finally:
        lt.process.stop()
