"""The two-node scenario: what a visitor pays when it reaches a node that does not own the
tunnel (scale-out, docs/cluster.md).

Two relay nodes, alpha and bravo, on a fresh PostgreSQL database and one flushed Redis
database index; the npm `lt` registers on alpha (the owner). wrk sends 1 KiB requests over
10 connections to alpha, then to bravo, which forwards each one to alpha (one more HTTP
hop on loopback). Rounds alternate the order; `two_node_ratio` is the median through bravo
over the median through alpha. Needs PostgreSQL (BENCH_PG, a libpq URL to the maintenance
database) and Redis (BENCH_REDIS, without a database index).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import redis

from bench.procs import ROOT, StartError, wait_until
from bench.wrk import WrkResult, run_wrk

if TYPE_CHECKING:
    from bench.scenarios import Bench, Target

PG_URL = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
# tests/cluster flushes indexes 1-15 by its pid; the bench keeps to one of them, also by pid.
REDIS_INDEX = 1 + os.getpid() % 15
PATH, CONNECTIONS = "/1k", 10
NAME = "1KiB x10 conns"
CONNECT_TIMEOUT_S = 5
JOIN_TIMEOUT_S = 30.0
MIGRATE_TIMEOUT_S = 120.0


def skipped(reason: str) -> dict[str, Any]:
    return {"name": NAME, "skipped": reason, "two_node_ratio": None}


def preflight() -> None:
    """Fail at the start of a run, not after minutes of it, if a service is missing."""
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S):
            pass
    except psycopg.Error as exc:
        raise StartError(
            f"the two-node scenario needs PostgreSQL at {PG_URL} (set BENCH_PG): {exc}"
        ) from None
    try:
        client = redis.Redis.from_url(
            REDIS_BASE, socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
        )
        client.ping()
        client.close()
    except redis.RedisError as exc:
        raise StartError(
            f"the two-node scenario needs Redis at {REDIS_BASE} (set BENCH_REDIS): {exc}"
        ) from None


@contextmanager
def fresh_services() -> Iterator[tuple[str, str]]:
    """(DATABASE_URL, REDIS_URL) of a new database and a flushed Redis index; the
    database is dropped afterwards."""
    name = f"tunnelsite_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_url = f"{REDIS_BASE}/{REDIS_INDEX}"
    client = redis.Redis.from_url(redis_url, socket_timeout=CONNECT_TIMEOUT_S)
    client.flushdb()
    client.close()
    base = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgres://", 1)
    try:
        yield f"{base}/{name}", redis_url
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(bench: Bench, tmp: Path, template: Path, app_port: int, npm_lt: Path) -> dict[str, Any]:
    """Start alpha and bravo and the npm client on alpha; wrk through both; the summary."""
    from bench.scenarios import MAX_SOCKETS, Relay, Target

    if not npm_lt.exists():
        return skipped(f"{npm_lt} is not installed")
    opts = bench.options
    started = len(bench.children.children)
    with fresh_services() as (database_url, redis_url):
        try:
            env = {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "SECRET_KEY": "benchrelay-two-nodes-" + uuid.uuid4().hex,  # the same on both
            }
            _migrate(database_url)
            nodes: list[Relay] = []
            for name in ("alpha", "bravo"):
                relay = bench.start_relay(tmp, template, RELAY_NODE_NAME=name, **env)
                relay.child.wait_for_line(rf"node {name} advertised as \S+", JOIN_TIMEOUT_S)
                nodes.append(relay)
            alpha, bravo = nodes
            owner = bench.start_tunnel("npm", [str(npm_lt)], alpha, app_port)
            if not owner.available:
                return skipped(f"the npm client did not start on alpha: {owner.reason}")
            name = owner.host.split(".", 1)[0]
            other = Target("non-owner", bravo.port, f"{name}.localhost:{bravo.port}", "npm")
            _wait_for_forwarding(other)
            bench.say(f"two nodes: {name} on alpha ({MAX_SOCKETS} sockets), bravo forwards")
            targets = {"owner": owner, "non_owner": other}
            if opts.warmup_s:
                for target in targets.values():
                    run_wrk(_url(target), target.host, CONNECTIONS, opts.warmup_s)
            results: dict[str, list[WrkResult]] = {label: [] for label in targets}
            for round_no in range(opts.rounds):
                order = list(targets.items())
                if round_no % 2:
                    order.reverse()
                for label, target in order:
                    result = run_wrk(_url(target), target.host, CONNECTIONS, opts.duration_s)
                    results[label].append(result)
                    bench.say(
                        f"round {round_no + 1}/{opts.rounds} two nodes {label:<9} "
                        f"{result.rps:>9,.0f} req/s p50 {result.p50_ms:6.2f} ms "
                        f"p99 {result.p99_ms:6.2f} ms"
                        + (f" errors {result.errors}" if result.errors else "")
                    )
            return summary(results)
        finally:
            for child in reversed(bench.children.children[started:]):
                child.stop()
            del bench.children.children[started:]


def _migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        timeout=MIGRATE_TIMEOUT_S,
    )


def _url(target: Target) -> str:
    return f"http://127.0.0.1:{target.port}{PATH}"


def _wait_for_forwarding(target: Target) -> None:
    """bravo learns the owner from alpha's announcement: wait until a request goes through."""

    def forwards() -> bool:
        check = run_wrk(_url(target), target.host, 1, 1)
        return check.requests > 0 and not check.errors

    wait_until(forwards, JOIN_TIMEOUT_S, "bravo to forward to alpha")


def summary(results: dict[str, list[WrkResult]]) -> dict[str, Any]:
    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 3) if values else None

    entry: dict[str, Any] = {"name": NAME, "unit": "req/s", "client": "npm", "owner": "alpha"}
    for label, runs in results.items():
        entry[f"{label}_rps"] = median([r.rps for r in runs])
        entry[f"{label}_p50_ms"] = median([r.p50_ms for r in runs])
        entry[f"{label}_p99_ms"] = median([r.p99_ms for r in runs])
        entry[f"{label}_errors"] = sum(r.errors for r in runs)
        entry[f"{label}_rounds_rps"] = [round(r.rps, 1) for r in runs]
    owner, other = entry.get("owner_rps"), entry.get("non_owner_rps")
    entry["two_node_ratio"] = round(other / owner, 3) if owner and other is not None else None
    return entry


def table_line(entry: dict[str, Any]) -> str:
    if entry.get("skipped"):
        return f"Two nodes: skipped ({entry['skipped']})."
    return (
        f"Two nodes (PostgreSQL + Redis), {entry['name']}, npm `lt` on alpha: through the "
        f"owner {entry['owner_rps']:,.0f} req/s (p50 {entry['owner_p50_ms']:.2f} ms), through "
        f"the other node {entry['non_owner_rps']:,.0f} req/s "
        f"(p50 {entry['non_owner_p50_ms']:.2f} ms): two_node_ratio {entry['two_node_ratio']}."
    )
