"""Relays for the account quota tests: two nodes on one PostgreSQL database and one Redis
database (as tests/cluster starts them), and Redis for a single relay. PostgreSQL and Redis on
127.0.0.1 are required: without them these tests fail, they never skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from harness import pg
from harness.processes import ProcessGroup
from harness.redis_index import redis_index
from harness.relay import RELAY_COMMAND, RELAY_TEST_ENV, Relay

REDIS_BASE = os.environ.get("TUNNELSITE_TEST_REDIS", "redis://127.0.0.1:6379")
NODE_SECRET_KEY = (
    "quota-tests-only-secret-key-0123456789-abcdefghijklmnop"  # nodes refuse the dev key
)


@pytest.fixture(scope="module")
def redis_url() -> str:
    """A Redis database of this worker's, flushed."""
    url = f"{REDIS_BASE}/{redis_index('cluster')}"
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_BASE} is required for the quota tests: {exc}")
    return url


@pytest.fixture(scope="module")
def node_factory(redis_url: str) -> Iterator[Any]:
    """`node_factory(name, **env)`: a node of a two-node cluster on a fresh database."""
    name, db_url, _ = pg.fresh_database("tunnelsite_quota")
    env = {
        **os.environ,
        **RELAY_TEST_ENV,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "PYTHONUNBUFFERED": "1",
        "SECRET_KEY": NODE_SECRET_KEY,
    }
    group = ProcessGroup()
    try:

        def start(node: str, **overrides: Any) -> Relay:
            node_env = {**env, **{key: str(value) for key, value in overrides.items()}}
            process = group.start([*RELAY_COMMAND, "--node-name", node], node_env, name=node)
            port = int(process.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
            return Relay(process=process, port=port, env=node_env)

        yield start
    finally:
        group.stop_all()
        pg.drop_database(name)
