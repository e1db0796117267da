"""Real clients of real servers through TCP tunnels: `psql` to this machine's PostgreSQL,
`redis-cli` and `redis-benchmark` to its Redis (the services tests/cluster uses; these tests
fail, never skip, when they are not there). `make test` installs the clients (Debian's
postgresql-client and redis-tools)."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator

import pytest
from harness.redis_index import redis_index
from harness.tcp_tunnels import LtTcp, LtTcpLauncher

pytestmark = pytest.mark.timeout(120)

PG_URL = os.environ.get("TUNNELSITE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("TUNNELSITE_TEST_REDIS", "redis://127.0.0.1:6379")
RUN_S = 60.0
# redis-benchmark's connections: as many as the tunnel's pool carries at once
# (RELAY_MAX_SOCKETS' default, 10). Its default of 50 would keep 40 waiting for a pool
# connection for the whole run, and RELAY_TCP_WAIT_S (10 s) closes them: one visitor
# connection per pool connection (docs/tcp.md, "Limits").
BENCH_CLIENTS = 10
BENCH_REQUESTS = 10000


def program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; `make test` installs it")
    return found


def run(args: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=RUN_S)
    assert done.returncode == 0, f"{args[0]} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def tunnel_to(launcher: LtTcpLauncher, relay_url: str, url: str, token: str) -> Iterator[LtTcp]:
    """`lt tcp` to the service at `url` (its port, on localhost)."""
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    lt = launcher(relay_url, port, "--token", token)
    try:
        yield lt
    finally:
        lt.process.stop()


@pytest.fixture(scope="module")
def pg_tunnel(
    lt_tcp: LtTcpLauncher, relay_url: str, token_of: Callable[[], str]
) -> Iterator[LtTcp]:
    yield from tunnel_to(lt_tcp, relay_url, PG_URL, token_of())


@pytest.fixture(scope="module")
def redis_tunnel(
    lt_tcp: LtTcpLauncher, relay_url: str, token_of: Callable[[], str]
) -> Iterator[LtTcp]:
    yield from tunnel_to(lt_tcp, relay_url, REDIS_BASE, token_of())


def through(url: str, tunnel: LtTcp) -> str:
    """`url` with its host and port replaced by the tunnel's."""
    parts = urllib.parse.urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}{tunnel.host}:{tunnel.port}").geturl()


def test_psql_runs_a_query_through_a_tcp_tunnel(pg_tunnel: LtTcp) -> None:
    query = "SELECT 6 * 7, current_setting('server_version_num')::int > 0"
    out = run([program("psql"), through(PG_URL, pg_tunnel), "-AtX", "-c", query])
    assert out.strip() == "42|t"


def test_psql_sees_the_tunnel_as_the_clients_address(pg_tunnel: LtTcp) -> None:
    # The app sees lt's connection (lt dials it), not the visitor: a TCP tunnel carries bytes,
    # no X-Forwarded-For. On this machine both are loopback.
    out = run(
        [program("psql"), through(PG_URL, pg_tunnel), "-AtX", "-c", "SELECT inet_client_addr()"]
    )
    assert out.strip() in ("127.0.0.1", "::1")


def redis_cli(tunnel: LtTcp, *args: str, stdin: str | None = None) -> str:
    db = str(redis_index("cluster"))  # this worker's index (tests/harness/redis_index.py)
    cli = [program("redis-cli"), "-h", tunnel.host, "-p", str(tunnel.port), "-n", db]
    return run([*cli, *args], stdin)


def test_redis_cli_pings_through_a_tcp_tunnel(redis_tunnel: LtTcp) -> None:
    assert redis_cli(redis_tunnel, "PING").strip() == "PONG"


def test_a_pipelined_batch_through_a_tcp_tunnel_gets_every_reply(redis_tunnel: LtTcp) -> None:
    # --pipe writes the whole batch before reading any reply: 1,000 commands in flight at once
    # on the one visitor connection, then their replies in order.
    key = f"tcp-e2e-{os.getpid()}"
    batch = [f"DEL {key}"] + [f"RPUSH {key} item-{i}" for i in range(998)] + [f"LLEN {key}"]
    out = redis_cli(redis_tunnel, "--pipe", stdin="\r\n".join(batch) + "\r\n")
    assert "errors: 0, replies: 1000" in out, out
    assert redis_cli(redis_tunnel, "LINDEX", key, "997").strip() == "item-997"
    redis_cli(redis_tunnel, "DEL", key)


def test_redis_benchmark_runs_through_a_tcp_tunnel(redis_tunnel: LtTcp) -> None:
    # Its figures go to docs/benchmarks.md from one run; speed is not asserted.
    db = str(redis_index("cluster"))
    out = run(
        [program("redis-benchmark"), "-h", redis_tunnel.host, "-p", str(redis_tunnel.port)]
        + ["-n", str(BENCH_REQUESTS), "-c", str(BENCH_CLIENTS), "--dbnum", db]
        + ["-t", "ping,set,get", "-q"]
    )
    print(out)  # shown with -s: the figures for docs/benchmarks.md
    lines = [line for line in out.replace("\r", "\n").splitlines() if "requests per second" in line]
    assert [line.split(":")[0] for line in lines] == ["PING_INLINE", "PING_MBULK", "SET", "GET"]
