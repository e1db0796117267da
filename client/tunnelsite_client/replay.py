"""When a request may be sent again, and the part of its body kept for that.

A request that finds the kept connection to the app dead (the app closed it while idle)
before any byte of an answer is sent again on a fresh connection when that is possible: it
may be repeated without harm (`may_resend`) and all of its body is still held (upload.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import h11

# RFC 9110 section 9.2.2: a request is sent again automatically only when repeating it is
# harmless (as Go's HTTP client does): an idempotent method, or an Idempotency-Key header.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_IDEMPOTENCY_KEYS = frozenset({b"idempotency-key", b"x-idempotency-key"})


def may_resend(request: h11.Request) -> bool:
    """Whether repeating `request` on a fresh connection is harmless."""
    return resend_harmless(request.method, request.headers)


def resend_harmless(method: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether repeating a request with this method and these headers (names in any case)
    on a fresh connection is harmless."""
    if method in _IDEMPOTENT:
        return True
    return any(name.lower() in _IDEMPOTENCY_KEYS for name, _ in headers)
