"""When a request may be sent again, and the part of its body kept for that.

A request that finds the kept connection to the app dead (the app closed it while idle)
before any byte of an answer is sent again on a fresh connection when that is possible: it
may be repeated without harm (`may_resend`) and all of its body is still held (upload.py).
"""

from __future__ import annotations

import h11

# RFC 9110 section 9.2.2: a request is sent again automatically only when repeating it is
# harmless (as Go's HTTP client does): an idempotent method, or an Idempotency-Key header.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_IDEMPOTENCY_KEYS = frozenset({b"idempotency-key", b"x-idempotency-key"})


def may_resend(request: h11.Request) -> bool:
    """Whether repeating `request` on a fresh connection is harmless."""
    if request.method in _IDEMPOTENT:
        return True
    return any(name in _IDEMPOTENCY_KEYS for name, _ in request.headers)


def resend_harmless_raw(method: bytes, lowered: bytes) -> bool:
    """The same for a head the fast path read: `lowered`, its header lines lowercased, each
    after a CRLF (raw_head.RequestHead.lowered)."""
    if method in _IDEMPOTENT:
        return True
    return any(b"\r\n" + key + b":" in lowered for key in _IDEMPOTENCY_KEYS)
