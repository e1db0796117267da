"""Closing a tunnel for its own client (DELETE /api/tunnels/<name>) through relay.face: the
view reads the tunnel's status, checks the token in a worker thread, then asks face to
close it. Between the two, the name may pass to another tunnel; that one stays open."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.test import TestCase, override_settings
from harness.accounts import (
    AddressedClient,
    bearer,
    isolated,
    make_token,
    make_user,
    upgraded_pool_connection,
)
from harness.waiting import wait_until_async

from relay import face
from relay.pool.registry import get_registry

OWNER = ("127.0.0.1", 50000)
LT = "tunnelsite-lt/0.1"
OLD, NEW = "client-aaaa-0001", "client-bbbb-0002"


def lt_headers(client_id: str) -> dict[str, str]:
    return {"User-Agent": LT, "X-Tunnelsite-Client": client_id, "X-Tunnelsite-Pool": "upgrade"}


@override_settings(RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0)
class CloseForClientTests(TestCase):
    async def _register(self, target: str, client_id: str, **extra: str) -> str:
        answer = await AddressedClient(OWNER).get(
            target, headers={**lt_headers(client_id), **extra}
        )
        self.assertEqual(answer.status_code, 200, answer.content)
        return answer.json()["id"]

    async def _client_gone(self, name: str) -> None:
        """A pool connection attaches, then goes: the client is gone, the name in its grace."""
        tunnel = get_registry().get(name)
        assert tunnel is not None
        _, writer = await upgraded_pool_connection(tunnel)
        await wait_until_async(lambda: tunnel.connected_sockets == 1)
        writer.close()
        await writer.wait_closed()
        await wait_until_async(lambda: tunnel.connected_sockets == 0)

    @isolated
    async def test_the_tunnel_read_is_the_one_closed(self):
        await self._register("/held-name", OLD)
        seen = face.tunnel_status("held-name")
        assert seen is not None
        closing = face.close_for_client(seen, seen.owner, OLD, "closed by client")
        self.assertIs(closing, face.Closing.CLOSED)
        self.assertIsNone(face.tunnel_status("held-name"))

    @isolated
    async def test_a_close_for_a_tunnel_whose_name_passed_on_leaves_the_new_holder_open(self):
        user = await sync_to_async(make_user)("holder")
        _, token = await sync_to_async(make_token)(user)
        auth = bearer(token)  # a token holder's: an anonymous tunnel is never taken over
        await self._register("/held-name", OLD, **auth)
        seen = face.tunnel_status("held-name")
        assert seen is not None
        await self._register("/held-name?takeover=1", NEW, **auth)  # during the token check
        for client_id in (OLD, ""):
            closing = face.close_for_client(seen, seen.owner, client_id, "closed by client")
            self.assertIs(closing, face.Closing.CLOSED)  # the tunnel asked about is gone
        holder = get_registry().get("held-name")
        assert holder is not None
        self.assertEqual((holder.client_id, holder.closed), (NEW, False))

    @isolated
    async def test_the_checks_apply_to_the_tunnel_as_it_is_when_closing(self):
        await self._register("/held-name", OLD)
        seen = face.tunnel_status("held-name")
        assert seen is not None
        self.assertIs(
            face.close_for_client(seen, "ip:192.0.2.1", "", "closed by client"),
            face.Closing.NOT_THE_OWNER,
        )
        await self._client_gone("held-name")
        await self._register("/held-name", NEW)  # reclaimed by NEW
        self.assertIs(
            face.close_for_client(seen, seen.owner, OLD, "closed by client"),
            face.Closing.ANOTHER_CLIENT,
        )
        now = face.tunnel_status("held-name")
        assert now is not None
        self.assertEqual((now.opened_at, now.client_id), (seen.opened_at, NEW))
