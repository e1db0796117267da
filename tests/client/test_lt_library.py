"""`from tunnelsite_client import open_tunnel` and the thread-backed sync wrapper."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from harness.lt_process import name_of
from harness.waiting import wait_until

from tunnelsite_client import TunnelError, open_tunnel, open_tunnel_sync

if TYPE_CHECKING:
    from harness.relay_double import RelayDouble


def test_open_tunnel_gives_a_working_url_and_releases_the_name(relay: RelayDouble, app):
    async def main() -> str:
        async with open_tunnel(port=app.port, host=relay.url, token="lt_lib") as tunnel:
            name = name_of(tunnel.url)
            answer = await asyncio.to_thread(relay.request, name, "GET", "/lib")
            assert answer.json()["path"] == "/lib"
            # Counted just after the answer went out; polled off the loop, which runs on.
            await asyncio.to_thread(
                wait_until, lambda: tunnel.status.requests == 1, message="the request counted"
            )
            return name

    name = asyncio.run(main())
    assert [d.path for d in relay.deletes] == [f"/api/tunnels/{name}"]
    assert relay.registrations[0].headers["authorization"] == "Bearer lt_lib"


def test_open_tunnel_raises_the_relays_refusal(relay: RelayDouble):
    relay.forced.append((409, "quiet-fox is taken"))

    async def main() -> None:
        async with open_tunnel(port=1, host=relay.url, subdomain="quiet-fox"):
            raise AssertionError("the tunnel should not open")

    with pytest.raises(TunnelError) as caught:
        asyncio.run(main())
    assert (caught.value.status, caught.value.message) == (409, "quiet-fox is taken")


def test_the_sync_tunnel_runs_in_a_thread(relay: RelayDouble, app):
    with open_tunnel_sync(app.port, relay.url, subdomain="sync-tunnel") as tunnel:
        assert tunnel.url == f"http://sync-tunnel.localhost:{relay.port}"
        assert relay.request("sync-tunnel", "GET", "/sync").json()["path"] == "/sync"
    assert [d.path for d in relay.deletes] == ["/api/tunnels/sync-tunnel"]


def test_the_sync_tunnel_raises_the_relays_refusal_in_the_callers_thread(relay: RelayDouble):
    relay.forced.append((401, "a valid token is required"))
    with pytest.raises(TunnelError) as caught:
        open_tunnel_sync(1, relay.url)
    assert caught.value.status == 401
