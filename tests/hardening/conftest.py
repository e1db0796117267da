"""Fixtures for the hardening tests: one relay with short timeouts, one raw tunnel on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.fake_client import FakeTunnelClient
from harness.raw_tunnel import RawTunnel
from harness.relay import Relay


@pytest.fixture(scope="module")
def hardening_relay(module_relay_factory) -> Relay:
    return module_relay_factory(RELAY_RESPONSE_TIMEOUT_S=2, RELAY_SOCKET_WAIT_S=5)


@pytest.fixture(scope="module")
def raw_tunnel(hardening_relay: Relay) -> Iterator[RawTunnel]:
    client = FakeTunnelClient(hardening_relay)
    try:
        yield RawTunnel(hardening_relay, client)
    finally:
        client.close()
