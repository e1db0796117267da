"""The admin dashboard: staff only, live tunnels from the registry, rates, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from unittest import mock

from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.test import TestCase, override_settings
from harness.accounts import bearer, fresh_registry, make_token, make_user, tunnel_closed

from relay.cluster import control
from relay.traffic import Traffic

PAGE, DATA, DISCONNECT = "/admin/dashboard/", "/admin/dashboard/data", "/admin/dashboard/disconnect"


def make_viewer() -> User:
    user = make_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_tunnelsession"))
    return user


@contextlib.asynccontextmanager
async def control_listener() -> AsyncIterator[None]:
    """The relay's ear for disconnects (relay/cluster/control.py), as runrelay runs it."""
    ready = asyncio.Event()
    task = asyncio.get_running_loop().create_task(control.listen(ready))
    try:
        async with asyncio.timeout(2):
            await ready.wait()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@override_settings(RELAY_ALLOW_ANONYMOUS=True)
class DashboardTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner = make_user("owner")
        cls.token_row, cls.token = make_token(cls.owner, name="laptop")

    async def _open_two_tunnels(self) -> None:
        mine = await self.async_client.get("/my-app", headers=bearer(self.token))
        anonymous = await self.async_client.get("/anon-app")
        self.assertEqual((mine.status_code, anonymous.status_code), (200, 200))

    def test_the_admin_index_links_to_the_dashboard(self) -> None:
        self.client.force_login(self.operator)
        self.assertContains(self.client.get("/admin/"), f'href="{PAGE}"')

    def test_someone_signed_out_is_sent_to_the_admin_login(self) -> None:
        for url in (PAGE, DATA):
            with self.subTest(url=url):
                answer = self.client.get(url)
                self.assertEqual(answer.status_code, 302)
                self.assertTrue(answer["Location"].startswith("/admin/login/"))

    def test_a_user_who_is_not_staff_is_sent_to_the_admin_login(self) -> None:
        self.client.force_login(self.owner)
        for url in (PAGE, DATA):
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 302)

    async def test_it_lists_each_live_tunnel_with_its_link_owner_token_and_counters(self) -> None:
        async with fresh_registry() as registry:
            await self._open_two_tunnels()
            tunnel = registry.get("my-app")
            tunnel.requests, tunnel.bytes_in, tunnel.bytes_out = 7, 2048, 3 * 1024 * 1024
            await self.async_client.aforce_login(self.operator)
            page = await self.async_client.get(PAGE)
        self.assertContains(page, '<a href="http://my-app.localhost" target="_blank"')
        self.assertContains(page, "<td>owner</td>")
        self.assertContains(page, "<td>laptop</td>")
        self.assertContains(page, "<td>anonymous</td>")
        self.assertContains(page, "<td>0/10</td>", count=2)
        self.assertContains(page, "<td>7</td>")
        self.assertContains(page, "<td>3.0 MiB</td>")
        self.assertContains(page, '<dd id="stat-tunnels">2</dd>')
        self.assertContains(page, "<svg")

    async def test_the_data_endpoint_gives_numbers_and_the_fragments_to_swap_in(self) -> None:
        seen = Traffic()
        async with fresh_registry() as registry:
            await self._open_two_tunnels()
            tunnel = registry.get("my-app")
            now = time.time()
            seen.sample(registry.tunnels.values(), now - 2)
            tunnel.requests, tunnel.bytes_in, tunnel.bytes_out = 10, 4000, 8000
            seen.sample(registry.tunnels.values(), now)
            await self.async_client.aforce_login(self.operator)
            with mock.patch("relay.face.get_traffic", return_value=seen):
                answer = await self.async_client.get(DATA)
        data = answer.json()
        self.assertEqual(
            answer["Cache-Control"], "max-age=0, no-cache, no-store, must-revalidate, private"
        )
        self.assertEqual(data["live"], ["anon-app", "my-app"])
        self.assertEqual((data["tunnels"], data["sockets"]), (2, 0))
        self.assertEqual(data["requests_per_s"], 5.0)
        self.assertEqual((data["bytes_in_per_s"], data["bytes_out_per_s"]), (2000.0, 4000.0))
        self.assertIn('<dd id="stat-requests">5.0</dd>', data["stats_html"])
        self.assertIn("10 requests, 3.9 KiB in, 7.8 KiB out", data["chart_html"])
        self.assertIn('data-name="my-app"', data["tunnels_html"])
        self.assertIn("Disconnect", data["tunnels_html"])

    async def test_with_no_tunnels_it_says_so(self) -> None:
        async with fresh_registry():
            await self.async_client.aforce_login(self.operator)
            data = (await self.async_client.get(DATA)).json()
        self.assertEqual(data["live"], [])
        self.assertIn("No tunnels are live", data["tunnels_html"])

    async def test_the_disconnect_button_closes_that_tunnel_through_the_control_channel(
        self,
    ) -> None:
        async with fresh_registry() as registry, control_listener():
            await self._open_two_tunnels()
            await self.async_client.aforce_login(self.operator)
            answer = await self.async_client.post(DISCONNECT, {"name": "my-app"})
            self.assertEqual((answer.status_code, answer["Location"]), (302, PAGE))
            await tunnel_closed(registry, "my-app")
            self.assertIsNotNone(registry.get("anon-app"), "only the one pressed closes")
            self.assertEqual(registry.tunnels["anon-app"].closed, False)

    async def test_a_staff_user_who_may_only_view_sees_no_button_and_cannot_disconnect(
        self,
    ) -> None:
        viewer = await sync_to_async(make_viewer)()
        async with fresh_registry() as registry, control_listener():
            await self._open_two_tunnels()
            await self.async_client.aforce_login(viewer)
            page = await self.async_client.get(PAGE)
            self.assertContains(page, 'data-name="my-app"')
            self.assertNotContains(page, "Disconnect</button>")
            refused = await self.async_client.post(DISCONNECT, {"name": "my-app"})
            self.assertEqual(refused.status_code, 403)
            self.assertIsNotNone(registry.get("my-app"))

    def test_disconnecting_needs_a_post_with_the_csrf_token(self) -> None:
        self.client.force_login(self.operator)
        self.assertEqual(self.client.get(DISCONNECT).status_code, 405)
        strict = self.client_class(enforce_csrf_checks=True)
        strict.force_login(self.operator)
        self.assertEqual(strict.post(DISCONNECT, {"name": "my-app"}).status_code, 403)
