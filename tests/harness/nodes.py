"""Relay nodes on one fresh PostgreSQL database and one Redis database, for test modules
outside tests/cluster (tests/dashboard_cluster): a node can be stopped and started again
under its name, on the same database.

PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 are required (TUNNELSITE_TEST_PG,
TUNNELSITE_TEST_REDIS override them, as for tests/cluster): unreachable, the test fails.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis

from harness import pg
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.redis_index import redis_index
from harness.relay import NO_LIVE_TUNNEL_CAP, RELAY_COMMAND, RELAY_TEST_ENV, Relay

REDIS_BASE = os.environ.get("TUNNELSITE_TEST_REDIS", "redis://127.0.0.1:6379")
# A node refuses the public development key; the test nodes share this one.
NODES_SECRET_KEY = "node-tests-only-secret-key-0123456789-abcdefghijklmnopqrstu"
MANAGE_TIMEOUT_S = 120.0  # a management command on a busy machine


@dataclass
class Node(Relay):
    name: str = ""


class Nodes:
    """The nodes of one test module: one database, one Redis index, one process group."""

    def __init__(self, db_url: str, pg_url: str, redis_url: str, group: ProcessGroup) -> None:
        self.db_url, self.pg_url, self.redis_url, self.group = db_url, pg_url, redis_url, group

    def env(self, **overrides: Any) -> dict[str, str]:
        env = {**os.environ, **RELAY_TEST_ENV, **NO_LIVE_TUNNEL_CAP}
        env.update(
            DATABASE_URL=self.db_url,
            REDIS_URL=self.redis_url,
            PYTHONUNBUFFERED="1",
            RELAY_LOG_LEVEL="WARNING",
            SECRET_KEY=NODES_SECRET_KEY,
        )
        env.update({key: str(value) for key, value in overrides.items()})
        return env

    def start(self, name: str, **overrides: Any) -> Node:
        env = self.env(**overrides)
        process = self.group.start([*RELAY_COMMAND, "--node-name", name], env, name=f"node-{name}")
        port = int(process.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        process.wait_for_line(rf"node {name} advertised as (\S+)")
        return Node(process=process, port=port, env=env, name=name)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=MANAGE_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@contextmanager
def fresh_nodes() -> Iterator[Nodes]:
    """A migrated database of its own (harness/pg.py) and a flushed Redis index; dropped
    and every node stopped at the end."""
    name, db_url, pg_url = pg.fresh_database("tunnelsite_nodes")
    redis_url = f"{REDIS_BASE}/{redis_index('cluster')}"
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_BASE} is required: {exc}")
    group = ProcessGroup()
    try:
        nodes = Nodes(db_url, pg_url, redis_url, group)
        yield nodes
    finally:
        group.stop_all()
        pg.drop_database(name)
