"""The visitor's Host is read once: relay/edge/channel.py leaves the tunnel name in the
scope (protocol.TUNNEL_SCOPE_KEY) and the router takes it from there instead of parsing
the header again. A scope without it (a WebSocket, a request without a single Host) is
routed by its Host header, as before."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from relay.edge.routing import HostRouter
from relay.protocol import TUNNEL_SCOPE_KEY


def route(scope: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Where the router sent the request: ["site"], or the answer the relay gave."""
    reached: list[str] = []
    sent: list[dict[str, Any]] = []

    async def site(scope: Any, receive: Any, send: Any) -> None:
        reached.append("site")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(HostRouter(site_http=site)(scope, receive, send))
    return reached, sent


def http(host: bytes, **extensions: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", host), (b"accept", b"application/json")],
        "client": ("203.0.113.9", 5000),
        "extensions": extensions,
    }


def test_the_name_the_edge_read_is_used_and_the_host_not_parsed_again() -> None:
    # The Host names a tunnel, but the edge said "the site": the router believes the edge.
    reached, _ = route(http(b"quiet-fox-3f9a.localhost", **{TUNNEL_SCOPE_KEY: None}))
    assert reached == ["site"]
    # ...and the other way round: the edge's name goes to the proxy (no such tunnel: 404).
    reached, sent = route(http(b"localhost", **{TUNNEL_SCOPE_KEY: "quiet-fox-3f9a"}))
    assert reached == [] and sent[0]["status"] == 404
    assert "quiet-fox-3f9a" in json.loads(sent[1]["body"])["message"]


def test_without_the_edges_name_the_host_header_decides() -> None:
    reached, sent = route(http(b"quiet-fox-3f9a.localhost"))
    assert reached == [] and sent[0]["status"] == 404
    reached, _ = route(http(b"localhost"))
    assert reached == ["site"]
