"""Fixtures shared by the end-to-end modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.our_client import OurLtLauncher
from harness.processes import ProcessGroup


@pytest.fixture(scope="module")
def our_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurLtLauncher]:
    """Our `lt` processes for one module, each with a config directory of its own."""
    group = ProcessGroup()
    try:
        yield OurLtLauncher(group, tmp_path_factory.mktemp("lt-config"))
    finally:
        group.stop_all()
