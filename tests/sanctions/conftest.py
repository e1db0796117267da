"""Relays on Redis, so what the admin does in another process (`manage.py shell`, the channel
layer) reaches them, as in production."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis
from harness.redis_index import redis_index
from harness.relay import Relay
from harness.waiting import wait_until

REDIS_BASE = os.environ.get("TUNNELSITE_TEST_REDIS", "redis://127.0.0.1:6379")
CONTROL_GROUP_KEY = "asgi:group:relay-control"


@pytest.fixture
def redis_relay_factory(relay_factory: Callable[..., Relay]) -> Iterator[Callable[..., Relay]]:
    """`redis_relay_factory(**settings)`: a relay on this worker's Redis database (flushed
    first), once it listens to the control group."""
    url = f"{REDIS_BASE}/{redis_index('sanctions')}"
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    client.flushdb()

    def start(**overrides: object) -> Relay:
        relay = relay_factory(REDIS_URL=url, **overrides)
        wait_until(lambda: client.zcard(CONTROL_GROUP_KEY) > 0, 10, "the relay on Redis")
        return relay

    try:
        yield start
    finally:
        client.flushdb()
        client.close()
