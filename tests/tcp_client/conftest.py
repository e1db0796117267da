"""Fixture wiring for `lt tcp`'s tests; the peers live in peers.py and fake_relay.py.

- `run_lt(*args, env=...)`: the real `lt` command as an `LtProcess` (harness/lt_process.py),
  with an environment cleared of what lt reads and a config directory of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness.lt_process import LtProcess, clean_lt_env


@pytest.fixture
def run_lt(tmp_path: Path) -> Iterator[Callable[..., LtProcess]]:
    started: list[LtProcess] = []
    base = clean_lt_env(tmp_path / "config")

    def run(*args: str, env: dict[str, str] | None = None) -> LtProcess:
        process = LtProcess(list(args), {**base, **(env or {})})
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()
