"""The bare domain's Django, called so that a caller who leaves ends the view.

When a caller's connection closes, the edge cancels the request's task at once
(relay/proxy/flow.py, `Flow.disconnected`). Django's ASGIHandler (5.2) runs the view in a
task of its own and, when it is cancelled itself, leaves that task running: a replay
(relay/proxy/replay.py) whose caller had gone went on reading its app's answer, holding a
pool socket, for up to RELAY_RESPONSE_TIMEOUT_S, and Daphne logged that the request "took
too long to shut down and was killed". Django does end the view itself (a CancelledError in
it, whose `finally` frees what it holds) when `receive` says `http.disconnect`, which Daphne
queues as the connection closes. So the edge's cancel is kept off Django's handler, which
gets protocol.SITE_DISCONNECT_WAIT_S to end the view that way, and only then is cancelled.
"""

from __future__ import annotations

import asyncio

from relay.asgi_types import ASGIApp, Receive, Scope, Send
from relay.protocol import SITE_DISCONNECT_WAIT_S


def ending_on_disconnect(site: ASGIApp) -> ASGIApp:
    """`site` (Django's ASGI application) for HTTP requests, as the docstring above says."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await site(scope, receive, send)
            return
        handler = asyncio.ensure_future(site(scope, receive, send))
        try:
            await asyncio.shield(handler)
        except asyncio.CancelledError:
            try:
                await asyncio.wait({handler}, timeout=SITE_DISCONNECT_WAIT_S)
            finally:
                if not handler.done():
                    handler.cancel()
            raise

    return call
