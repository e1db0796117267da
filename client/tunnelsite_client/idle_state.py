"""What an idle kept connection to the local app holds right before its reuse.

`idle_state()` of either connection kind (local_tcp.py, local_tls.py) answers with one of
these; the exchange keeps, reopens or distrusts the connection accordingly.
"""

from __future__ import annotations

QUIET = "quiet"  # nothing: it may carry the next request
CLOSED = "closed"  # the app closed it (keep-alive timeout) or it failed: open a new one
STRAY = "stray"  # bytes the app sent while nobody asked: a late answer to someone else
