"""A plan's bandwidth on a cluster: the node that owns the tunnel paces its traffic, also what
another node forwards to it, once, against the same account's rate (relay/pool/bandwidth.py;
docs/quotas.md#bandwidth)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness.http import timed_download
from harness.waiting import IO_TIMEOUT_S, wait_until

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
RATE = MIB  # RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND: the npm client's tunnel is anonymous
SIZE = 5 * MIB


def pattern(n: int) -> bytes:
    """tests/apps/local_app.py's /bytes/N body."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def download(node, name: str, size: int) -> tuple[float, str, int]:  # type: ignore[no-untyped-def]
    """GET /bytes/<size> on `node`: (seconds, sha256, length) as the visitor read it."""
    return timed_download(node.port, node.host(name), size)


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
