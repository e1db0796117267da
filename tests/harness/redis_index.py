"""Which Redis database (1-15) a test module may flush and fill, so that runs never share one.

The suite runs in several xdist workers at once (`make test`), and the cluster tests flush
their database: two workers on one index would wipe each other's channel groups. Each worker
gets its own three indices (one per purpose), offset per run so that two runs on one machine
(a developer's beside CI's) rarely meet either. Five workers at most fit in 15 databases.
"""

from __future__ import annotations

import os

PURPOSES = ("cluster", "control", "accounts", "sanctions")
MAX_WORKERS = 15 // len(PURPOSES)


def redis_index(purpose: str) -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = int(worker.removeprefix("gw") or 0)
    if number >= MAX_WORKERS:
        raise RuntimeError(f"at most {MAX_WORKERS} xdist workers share one Redis (15 databases)")
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    offset = int(run, 16) if run else os.getpid()
    slot = number * len(PURPOSES) + PURPOSES.index(purpose)
    return 1 + (slot + offset) % 15  # a shift of the run keeps its indices apart
