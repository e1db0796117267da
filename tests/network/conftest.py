"""Fixtures of the network tests: two namespaces joined by a veth pair, and what runs in them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.netns import DOMAIN, RELAY_ADDRESS, Network, NetworkRun
from harness.processes import ProcessGroup


@pytest.fixture
def net(relay_template_db: Path, tmp_path: Path) -> Iterator[NetworkRun]:
    """A relay namespace and a client namespace (the relay's domain resolves to it there),
    with a process group for each test; all of it removed after the test, even on failure."""
    network = Network(hosts={DOMAIN: RELAY_ADDRESS})
    group = ProcessGroup()
    try:
        yield NetworkRun(network, group, tmp_path, relay_template_db)
    finally:
        try:
            group.stop_all()
        finally:
            network.close()
