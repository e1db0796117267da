"""A plan's bandwidth on a cluster: the node that owns the tunnel paces its traffic, also what
another node forwards to it, once, against the same account's rate (relay/pool/bandwidth.py;
docs/quotas.md#bandwidth)."""

from __future__ import annotations

import hashlib
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import h11
import pytest
from harness.waiting import IO_TIMEOUT_S, wait_until

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
RATE = MIB  # RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND: the npm client's tunnel is anonymous
SIZE = 5 * MIB
TRANSFER_TIMEOUT_S = 30.0


def pattern(n: int) -> bytes:
    """tests/apps/local_app.py's /bytes/N body."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def download(node, name: str, size: int) -> tuple[float, str, int]:
    """GET /bytes/<size> on `node`: (seconds, sha256, length) as the visitor read it."""
    started = time.monotonic()
    digest, length = hashlib.sha256(), 0
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", node.port), timeout=TRANSFER_TIMEOUT_S) as sock:
        head = h11.Request(
            method="GET", target=f"/bytes/{size}", headers=[("Host", node.host(name))]
        )
        sock.sendall(conn.send(head) + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(256 * 1024))
            elif isinstance(event, h11.Response):
                assert event.status_code == 200, event
            elif isinstance(event, h11.Data):
                digest.update(event.data)
                length += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
    return time.monotonic() - started, digest.hexdigest(), length


def test_traffic_forwarded_by_another_node_is_paced_by_the_owner_within_the_accounts_rate(
    cluster, local_app, lt_factory
):
    """5 MiB through the owner and 5 MiB through the other node at once: one account's
    10 MiB at 1 MiB/s, about 9 s for both (each alone would take about 4 s)."""
    alpha = cluster.start("alpha", RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND=RATE)
    bravo = cluster.start("bravo", RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND=RATE)
    lt = lt_factory(bravo, local_app.port)  # bravo owns the tunnel
    wait_until(
        lambda: alpha.get("/hello", name=lt.name).status == 200,
        IO_TIMEOUT_S,
        "alpha to forward to the owner",
    )
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda node: download(node, lt.name, SIZE), [alpha, bravo]))
    expected = hashlib.sha256(pattern(SIZE)).hexdigest()
    for _, digest, length in results:
        assert (length, digest) == (SIZE, expected)
    assert 8.0 <= max(seconds for seconds, _, _ in results) <= 14.0, results
    assert min(seconds for seconds, _, _ in results) >= 6.0, results
