"""The HTML page an HTTP visitor of a TCP tunnel's host gets is titled for what it says (a
TCP tunnel, where to connect), not "No such tunnel": the tunnel exists."""

from __future__ import annotations

import asyncio

from django.test import override_settings

from .test_http_visitors import ANSWER, scope, tcp_tunnel, untouched, visit


@override_settings(RELAY_TCP_HOST="tcp.example.test")
def test_the_html_page_for_a_tcp_tunnels_host_is_titled_a_tcp_tunnel() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as (tunnel, reader):
            sent = await visit(scope(accept=b"text/html"))
            body = sent[1]["body"].decode()
            assert sent[0]["status"] == 404 and ANSWER in body
            assert "<title>404 A TCP tunnel</title>" in body
            assert "No such tunnel" not in body
            await untouched(tunnel, reader)

    asyncio.run(scenario())
