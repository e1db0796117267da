"""relay/run/heap.py: the start-up heap set aside, the collector's thresholds set."""

from __future__ import annotations

import gc

from relay.protocol import GC_THRESHOLDS
from relay.run.heap import settle


def test_settle_freezes_the_start_up_heap_and_sets_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        made_at_start = [object(), [], {}]  # tracked containers, alive across settle()
        settle()
        assert gc.get_threshold() == GC_THRESHOLDS
        # What existed is frozen: no generation holds it, so no collection walks it.
        assert all(o is not made_at_start for o in gc.get_objects())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
