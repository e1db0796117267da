"""A WAN between our lt and the relay: 50 ms of delay and 1% loss on the client's egress (tc
netem, or its NFQUEUE stand-in where the kernel has no netem), our lt over the relay's TLS
with its pool upgraded. 100 requests, a 10 MiB download and a WebSocket echo succeed; the
test prints the median latency with and without the WAN, measured in the same run."""

from __future__ import annotations

import hashlib
import statistics
import time

from harness.netns import NetworkRun, NsRelay

DELAY_MS = 50
LOSS_PERCENT = 1.0
REQUESTS = 100
DOWNLOAD_BYTES = 10 * 1024 * 1024
# A download over a lossy 50 ms path: well under this, whatever the loss costs.
DOWNLOAD_TIMEOUT_S = 40.0
WS_MESSAGES = 20


def latencies(relay: NsRelay, name: str, count: int) -> list[float]:
    """Seconds per request for `count` requests on one kept-alive visitor connection."""
    took = []
    with relay.visitor(name) as visitor:
        for _ in range(count):
            started = time.monotonic()
            answer = visitor.request("GET", "/hello")
            took.append(time.monotonic() - started)
            assert answer.status == 200, answer
    return took


def expected_pattern(n: int) -> bytes:
    """tests/apps/local_app.py's /bytes/N: byte i is i % 251."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def test_requests_a_download_and_a_websocket_cross_a_lossy_50_ms_path(net: NetworkRun) -> None:
    relay = net.relay()
    app = net.app()
    lt = net.lt(relay, app)
    before = statistics.median(latencies(relay, lt.name, REQUESTS))

    how = net.impair(net.network.client, DELAY_MS, LOSS_PERCENT)
    started = time.monotonic()
    after = statistics.median(latencies(relay, lt.name, REQUESTS))
    requests_s = time.monotonic() - started

    started = time.monotonic()
    with relay.visitor(lt.name) as visitor:
        visitor.sock.settimeout(DOWNLOAD_TIMEOUT_S)
        answer = visitor.request("GET", f"/bytes/{DOWNLOAD_BYTES}")
    download_s = time.monotonic() - started
    assert answer.status == 200 and answer.complete, answer.status
    assert len(answer.body) == DOWNLOAD_BYTES
    digest = hashlib.sha256(answer.body).digest()
    assert digest == hashlib.sha256(expected_pattern(DOWNLOAD_BYTES)).digest()

    messages = [f"message {i}" for i in range(WS_MESSAGES)]
    echoes = relay.websocket_echo(lt.name, messages)
    assert echoes == messages

    added_ms = (after - before) * 1000
    print(
        f"\nWAN ({how}: {DELAY_MS} ms, {LOSS_PERCENT:g}% loss on lt's egress): median request "
        f"{before * 1000:.1f} ms without, {after * 1000:.1f} ms with (+{added_ms:.1f} ms); "
        f"{REQUESTS} requests in {requests_s:.1f} s; 10 MiB in {download_s:.1f} s "
        f"({DOWNLOAD_BYTES / download_s / 1e6:.1f} MB/s)"
    )
    assert after - before >= DELAY_MS / 1000 * 0.9  # the WAN was really there
