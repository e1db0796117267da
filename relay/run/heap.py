"""The relay's heap before it serves: what was built at start is set aside from the cyclic
garbage collector, so its collections walk only what requests and tunnels made since."""

from __future__ import annotations

import gc

from relay.protocol import GC_THRESHOLDS


def settle() -> None:
    """Collect start-up's garbage, then freeze what is left (Django, the URL routes, the
    relay's modules and app: ~110,000 objects that live as long as the process), and set
    the collector's thresholds (relay.protocol.GC_THRESHOLDS: why those)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
