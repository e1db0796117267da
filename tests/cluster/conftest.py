"""Fixtures for running several relay nodes on one PostgreSQL database and one Redis.

Each test module gets a fresh database (a copy of a migrated one, harness/pg.py; dropped
afterwards) and one Redis database index, flushed at the start. PostgreSQL on
127.0.0.1:5432 and Redis on 127.0.0.1:6379 are required: when they are unreachable these
tests fail, they never skip. Override with TUNNELSITE_TEST_PG (a libpq URL to the
maintenance database) and TUNNELSITE_TEST_REDIS (a redis:// URL without a database index).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import redis
from cluster_keys import CLUSTER_SECRET_KEY
from harness import pg
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.redis_index import redis_index
from harness.relay import NO_LIVE_TUNNEL_CAP, RELAY_COMMAND, RELAY_TEST_ENV, Relay

REDIS_BASE = os.environ.get("TUNNELSITE_TEST_REDIS", "redis://127.0.0.1:6379")


@dataclass
class Node(Relay):
    name: str = ""
    advertise: str = ""


@dataclass
class Cluster:
    """One database and one Redis index shared by the nodes a test module starts."""

    db_url: str  # for the nodes (Django's DATABASE_URL)
    pg_url: str  # for the test itself (psycopg)
    redis_url: str
    group: ProcessGroup
    nodes: list[Node] = field(default_factory=list)

    def env(self, **overrides: Any) -> dict[str, str]:
        # The races register many tunnels from 127.0.0.1: no cap of live tunnels per address.
        env = {**os.environ, **RELAY_TEST_ENV, **NO_LIVE_TUNNEL_CAP}
        env.update(
            {
                "DATABASE_URL": self.db_url,
                "REDIS_URL": self.redis_url,
                "PYTHONUNBUFFERED": "1",
                "RELAY_LOG_LEVEL": "WARNING",
                "SECRET_KEY": CLUSTER_SECRET_KEY,  # a node refuses the development key
            }
        )
        env.update({key: str(value) for key, value in overrides.items()})
        return env

    def start(self, name: str, **overrides: Any) -> Node:
        env = self.env(**overrides)
        process = self.group.start(
            [*RELAY_COMMAND, "--node-name", name],
            env,
            name=f"node-{name}",
        )
        port = int(process.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        advertise = process.wait_for_line(rf"node {name} advertised as (\S+)").group(1)
        node = Node(process=process, port=port, env=env, name=name, advertise=advertise)
        self.nodes.append(node)
        return node

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def manage(self, *args: str, timeout: float = 60) -> str:
        """Run a management command against this cluster's database; its stdout."""
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def _fresh_redis() -> str:
    index = redis_index("cluster")  # harness/redis_index.py: one per worker and run
    url = f"{REDIS_BASE}/{index}"
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_BASE} is required for the cluster tests: {exc}")
    return url


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    name, db_url, pg_url = pg.fresh_database("tunnelsite_cluster")
    group = ProcessGroup()
    try:
        yield Cluster(db_url, pg_url, _fresh_redis(), group)
    finally:
        group.stop_all()
        pg.drop_database(name)


@pytest.fixture(scope="module")
def two_nodes(cluster: Cluster) -> tuple[Node, Node]:
    return cluster.start("alpha"), cluster.start("bravo")


@pytest.fixture
def node_pair(two_nodes: tuple[Node, Node]) -> tuple[Node, Node]:
    return two_nodes


@pytest.fixture(name="db_rows")
def db_rows_fixture(cluster: Cluster) -> Callable[[str], list[tuple[Any, ...]]]:
    """`db_rows(name)`: (node, is_live, close_reason) of every session row of a name."""

    def rows(name: str) -> list[tuple[Any, ...]]:
        return cluster.query(
            "SELECT node, is_live, close_reason FROM tunnels_tunnel WHERE subdomain = %s "
            "ORDER BY id",
            name,
        )

    return rows
