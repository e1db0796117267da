"""One-time nonces for a form whose POST is answered 200 (the new-token form shows the
secret in that answer, once): reloading the answer resubmits the form, which without a
nonce made a second active token silently. Each rendering of the form carries a random
nonce kept in the session; its POST spends it, and a second POST with it is told so.

The session keeps the latest KEEP nonces, open or spent (a few tabs' worth), so it stays
small; a nonce older than that is "out of date", not "used".
"""

from __future__ import annotations

import secrets

from django.http import HttpRequest

KEEP = 20
OPEN, SPENT = "open", "spent"
FIELD = "nonce"


def _kept(request: HttpRequest, key: str) -> dict[str, str]:
    kept = request.session.get(key)
    return dict(kept) if isinstance(kept, dict) else {}


def _store(request: HttpRequest, key: str, kept: dict[str, str]) -> None:
    request.session[key] = dict(list(kept.items())[-KEEP:])  # dicts keep insertion order


def issue(request: HttpRequest, key: str) -> str:
    """A new nonce for one rendering of the form named `key`."""
    nonce = secrets.token_urlsafe(16)
    kept = _kept(request, key)
    kept[nonce] = OPEN
    _store(request, key, kept)
    return nonce


def spend(request: HttpRequest, key: str, nonce: str) -> str:
    """OPEN when `nonce` was open (it is spent now), SPENT when it was used before, "" when
    the session does not know it (missing, forged, or out of date)."""
    kept = _kept(request, key)
    state = kept.get(nonce, "") if nonce else ""
    if state == OPEN:
        kept[nonce] = SPENT
        _store(request, key, kept)
    return state
