"""The localtunnel registration API, through Django's async test client.

Each test runs on one event loop, so the pool listeners the registry opens are real.
"""

from __future__ import annotations

import asyncio
import json
from unittest import mock

from django.db import OperationalError
from django.test import AsyncClient, TestCase, override_settings
from harness.accounts import AddressedClient, isolated
from harness.waiting import wait_until_async

from relay.pool.registry import get_registry
from tunnels.models import TunnelSession as Session

OWNER = ("127.0.0.1", 50000)
# Our lt's per-run id: a second registration with it is the same client reconnecting.
SAME_CLIENT = {"X-Tunnelsite-Client": "test-client-0001"}
STRANGER = ("127.0.0.9", 50000)


@override_settings(RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0)
class RegistrationApiTests(TestCase):
    def _client(self, address: tuple[str, int]) -> AsyncClient:
        return AddressedClient(address)

    async def _get(self, path: str, client: tuple[str, int] = OWNER, **headers: str):
        return await self._client(client).get(path, headers=headers or None)

    @isolated
    async def test_it_answers_new_with_the_localtunnel_fields(self) -> None:
        response = await self._get("/?new")
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(set(body) - {"ip"}, {"id", "port", "max_conn_count", "url"})
        self.assertTrue(body["url"].startswith(f"http://{body['id']}.localhost"))
        self.assertIn(body["id"], get_registry().tunnels)
        session = await Session.objects.aget(subdomain=body["id"])
        self.assertTrue(session.is_live)
        self.assertEqual(session.port, body["port"])

    @override_settings(RELAY_PUBLIC_SCHEME="https", RELAY_PUBLIC_PORT=443, RELAY_DOMAIN="t.example")
    @isolated
    async def test_the_url_comes_from_settings_not_from_the_host_the_client_used(self) -> None:
        response = await self._get("/my-app-one")  # the test client says Host: testserver
        self.assertEqual(response.json()["url"], "https://my-app-one.t.example")

    @isolated
    async def test_an_invalid_name_is_refused_with_403_and_a_message(self) -> None:
        response = await self._get("/Not_Valid")
        self.assertEqual(response.status_code, 403)
        self.assertIn("subdomain", response.json()["message"].lower())

    @isolated
    async def test_the_npm_client_gets_the_error_as_203_so_it_stops_and_prints_it(self) -> None:
        response = await self._get("/Not_Valid", **{"User-Agent": "axios/0.21.4"})
        self.assertEqual(response.status_code, 203)
        self.assertEqual(response["X-Tunnelsite-Status"], "403")
        self.assertTrue(response.json()["message"])

    @isolated
    async def test_a_name_in_use_is_not_swapped_for_a_random_one(self) -> None:
        first = await self._get("/my-app-one")
        self.assertEqual(first.status_code, 200)
        taken = await self._get("/my-app-one", client=STRANGER)
        self.assertEqual(taken.status_code, 409)
        self.assertIn("in use", taken.json()["message"])

    @isolated
    async def test_the_owner_gets_its_name_and_port_back(self) -> None:
        first = (await self._get("/my-app-one", **SAME_CLIENT)).json()
        again = (await self._get("/my-app-one", **SAME_CLIENT)).json()  # our lt reconnecting
        self.assertEqual((again["id"], again["port"]), (first["id"], first["port"]))
        self.assertEqual(await Session.objects.filter(subdomain="my-app-one").acount(), 1)

    @isolated
    async def test_delete_frees_the_name_at_once_for_its_owner_only(self) -> None:
        await self._get("/my-app-one")
        refused = await self._client(STRANGER).delete("/api/tunnels/my-app-one")
        self.assertEqual(refused.status_code, 403)
        deleted = await self._client(OWNER).delete("/api/tunnels/my-app-one")
        self.assertEqual(deleted.status_code, 204)
        self.assertNotIn("my-app-one", get_registry().tunnels)
        other = await self._get("/my-app-one", client=STRANGER)
        self.assertEqual(other.status_code, 200)

    @isolated
    async def test_status_endpoints_have_the_localtunnel_shapes(self) -> None:
        await self._get("/my-app-one")
        status = await self._get("/api/status")
        self.assertEqual(status.json()["tunnels"], 1)
        self.assertIn("mem", status.json())
        one = await self._get("/api/tunnels/my-app-one/status")
        self.assertEqual(one.json(), {"connected_sockets": 0})
        missing = await self._get("/api/tunnels/nope-nope/status")
        self.assertEqual(missing.status_code, 404)
        self.assertTrue(json.loads(missing.content)["message"])

    @isolated
    async def test_counters_reach_the_database_in_a_batch_when_the_tunnel_closes(self) -> None:
        name = (await self._get("/?new")).json()["id"]
        tunnel = get_registry().get(name)
        assert tunnel is not None
        tunnel.requests, tunnel.bytes_in, tunnel.bytes_out = 7, 100, 2000
        get_registry().close(tunnel, "test closed it")
        self.assertEqual(await get_registry().flush(), 1)
        session = await Session.objects.aget(subdomain=name)
        self.assertEqual((session.requests, session.bytes_in, session.bytes_out), (7, 100, 2000))
        self.assertFalse(session.is_live)
        self.assertEqual(session.close_reason, "test closed it")

    @isolated
    async def test_a_browser_asking_for_a_favicon_registers_nothing(self) -> None:
        response = await self._get("/favicon.ico")
        self.assertEqual(response.status_code, 204)
        self.assertEqual(get_registry().tunnels, {})

    @isolated
    async def test_a_web_page_cannot_register_or_reclaim_a_name(self) -> None:
        first = await self._get("/my-app-one", **SAME_CLIENT)
        self.assertEqual(first.status_code, 200)
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
            answer = await self._get("/my-app-one", **headers, **SAME_CLIENT)
            self.assertEqual(answer.status_code, 403)
            self.assertIn("tunnel client", answer.json()["message"])
        typed = await self._get("/my-app-one", **{"Sec-Fetch-Site": "none"}, **SAME_CLIENT)
        self.assertEqual(typed.status_code, 200)  # a URL typed into the address bar

    @isolated
    async def test_a_failed_flush_keeps_the_close_for_the_next_one(self) -> None:
        name = (await self._get("/?new")).json()["id"]
        tunnel = get_registry().get(name)
        assert tunnel is not None
        get_registry().close(tunnel, "client gone")
        with mock.patch("tunnels.store.apply_updates", side_effect=OperationalError("db down")):
            with self.assertRaises(OperationalError):
                await get_registry().flush()
        self.assertEqual(await get_registry().flush(), 1)
        session = await Session.objects.aget(subdomain=name)
        self.assertFalse(session.is_live)
        again = await self._get(f"/{name}", client=STRANGER)
        self.assertEqual(again.status_code, 200)  # the name is free, not stuck as live

    @isolated
    async def test_a_flapping_client_leaves_one_grace_timer_not_one_per_flap(self) -> None:
        answer = (await self._get("/?new")).json()
        tunnel = get_registry().get(answer["id"])
        assert tunnel is not None
        first = tunnel.expiry
        self.assertIsNotNone(first)  # offline from the start: the grace period runs
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", answer["port"])
            await wait_until_async(lambda: tunnel.connected_sockets == 1)
            self.assertIsNone(tunnel.expiry)  # a socket came: no timer at all
            writer.close()
            await wait_until_async(lambda: tunnel.connected_sockets == 0)
        self.assertIsNotNone(tunnel.expiry)
        self.assertTrue(first.cancelled())
