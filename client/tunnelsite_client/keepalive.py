"""Whether a connection to the local app is kept for the next visitor's request.

It is kept only when the answer ended exactly where HTTP framing says, was not of a kind
where buggy apps write a body anyway (HEAD, 204, 304, after a 1xx, with trailers), and
nothing else waits (`ready_for_next`); right before its reuse it is checked again
(`idle_state`, local.py): whatever an app sends past an answer would otherwise be read as
the next visitor's. The first time the app does send such bytes, keep-alive is off for good
for the whole tunnel (`KeepAlive.distrust`): a late answer that arrives after the next
request was written cannot be told from that request's answer (nginx and Go's
http.Transport have the same limit), so a connection of its own per request is the only
safe course left.
"""

from __future__ import annotations

from http import HTTPStatus

import h11

# Answers after which a connection is never reused: no body is allowed, yet buggy apps
# write one anyway (RFC 9110 sections 15.3.5 and 15.4.5).
BODILESS_STATUSES = frozenset({HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED})


class KeepAlive:
    """Whether the pool sockets of a tunnel keep their connections to the app between
    requests. Off from the start with `--no-local-keepalive`; turned off for good the first
    time the app sends bytes past an answer (sticky distrust): once it has, nothing tells a
    late answer from the next visitor's, so every request gets a connection of its own."""

    __slots__ = ("enabled", "distrusted")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.distrusted = False

    def distrust(self) -> bool:
        """Stop reusing; True the first time (so the user is told once)."""
        first = self.enabled and not self.distrusted
        self.distrusted = True
        self.enabled = False
        return first


def ready_for_next(local: h11.Connection, body_size: int, ambiguous: bool) -> bool:
    """Whether the connection to the app may be kept for the next visitor's request.

    Only when the answer ended exactly where HTTP framing says and nothing else waits:
    anything past its end (bytes after a Content-Length, a body after HEAD, 204 or 304) is
    what the app sent for nobody, and the next visitor would read it as their answer. Not
    after an `ambiguous` answer either (to HEAD, a 204 or 304, after a 1xx, with trailers):
    where buggy apps write bytes anyway, often a little later, when the check cannot see
    them. A request with a body also ends the connection: an app may answer before reading
    the body and then take the body for a request of its own (a visitor could smuggle one),
    and nothing tells us whether it read it. The app closing, or an upload cut short, too.
    Bytes that arrive later are caught right before the reuse (`idle_state`).
    """
    if local.our_state is not h11.DONE or local.their_state is not h11.DONE:
        return False
    return not (local.trailing_data[0] or body_size or ambiguous)
