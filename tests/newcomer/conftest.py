"""Fixtures of the newcomer tests: a clean clone of the working tree (harness/newcomer.py)
and the app its quick start exposes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.newcomer import Clone, make_clone


@pytest.fixture(scope="session")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    fresh = Clone(make_clone(tmp_path_factory.mktemp("newcomer") / "tunnelsite"), [])
    try:
        yield fresh
    finally:
        for job in reversed(fresh.jobs):
            job.kill()


@pytest.fixture
def app(clone: Clone) -> Iterator[int]:
    """The app the quick start exposes ("an app running on port 3000"): a real HTTP server."""
    job = clone.start("exec python3 -u -m http.server 0 --bind 127.0.0.1", clone.env(), "app")
    try:
        yield int(job.wait_for_line(r"Serving HTTP on \S+ port (\d+)").group(1))
    finally:
        job.kill()
