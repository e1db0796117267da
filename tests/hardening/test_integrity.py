"""Data integrity: random bodies from 0 B to 64 MiB, Content-Length and chunked, both
directions, a few at once, through the real npm client and through our own `lt`.

Uploads are random bytes, checked by the local app's sha256 (`POST /sha256`); downloads are
`/bytes/N` (byte i is i % 251, a prime period so no chunk edge lines up) of random sizes.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness.http import Visitor
from harness.processes import ROOT, ProcessGroup
from harness.relay import Relay

MIB = 1024 * 1024
LT = ROOT / ".venv" / "bin" / "lt"


def pattern(n: int) -> bytes:
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def sizes(seed: int) -> list[int]:
    """Edge sizes (empty, one byte, around the relay's 256 KiB body pieces and 1 MiB read
    mark) plus random ones, and one of 64 MiB."""
    rng = random.Random(seed)
    edges = [0, 1, 256 * 1024 - 1, 256 * 1024 + 1, MIB + 7]
    return edges + [rng.randrange(2, 8 * MIB) for _ in range(5)] + [64 * MIB]


def chunked(body: bytes, rng: random.Random) -> bytes:
    parts, at = [], 0
    while at < len(body):
        size = rng.randrange(1, 300_000)
        part = body[at : at + size]
        parts.append(b"%x\r\n%s\r\n" % (len(part), part))
        at += size
    return b"".join(parts) + b"0\r\n\r\n"


def upload(relay: Relay, name: str, size: int, as_chunks: bool, seed: int) -> None:
    rng = random.Random(seed)
    body = rng.randbytes(size)
    with Visitor(relay.port, relay.host(name), timeout=60) as visitor:
        if as_chunks:
            headers = [("Transfer-Encoding", "chunked")]
            answer = visitor.request("POST", "/sha256", headers, chunked(body, rng))
        else:
            answer = visitor.request("POST", "/sha256", [], body)
    assert answer.status == 200, (size, as_chunks, answer.status)
    assert answer.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": size}


def download(relay: Relay, name: str, size: int) -> None:
    with Visitor(relay.port, relay.host(name), timeout=60) as visitor:
        answer = visitor.request("GET", f"/bytes/{size}")
    assert (answer.status, answer.complete, len(answer.body)) == (200, True, size)
    assert hashlib.sha256(answer.body).digest() == hashlib.sha256(pattern(size)).digest()


def run_all(relay: Relay, name: str) -> None:
    seed = int(os.environ.get("INTEGRITY_SEED") or int.from_bytes(os.urandom(4)))
    print(f"INTEGRITY_SEED={seed}")  # shown with a failure, to replay it
    jobs = []
    for i, size in enumerate(sizes(seed)):
        jobs.append((upload, (relay, name, size, i % 2 == 1, seed + i)))
        jobs.append((download, (relay, name, size)))
    random.Random(seed).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(job, *args) for job, args in jobs]:
            future.result(timeout=120)


@pytest.fixture(scope="module")
def integrity_relay(module_relay_factory) -> Relay:
    return module_relay_factory(RELAY_RESPONSE_TIMEOUT_S=60)


def test_random_bodies_cross_the_npm_client_intact_both_ways(
    integrity_relay, local_app, module_lt_factory
):
    tunnel = module_lt_factory(integrity_relay, local_app.port)

    run_all(integrity_relay, tunnel.name)


def test_random_bodies_cross_our_lt_intact_both_ways(integrity_relay, local_app, tmp_path: Path):
    if not LT.exists():
        pytest.fail("our lt is not installed in .venv")
    group = ProcessGroup()
    try:
        env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
        args = [str(LT), "--port", str(local_app.port)]
        args += ["--host", f"http://localhost:{integrity_relay.port}"]
        process = group.start(args, env, name="our-lt")
        url = process.wait_for_line(r"your url is: (\S+)").group(1)
        name = re.match(r"https?://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
        integrity_relay.wait_for_sockets(
            name, int(integrity_relay.env.get("RELAY_MAX_SOCKETS", "10"))
        )

        run_all(integrity_relay, name)
    finally:
        group.stop_all()
