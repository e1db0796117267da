"""The operator's admin: pages render, tokens show once, disconnects reach the relay."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import TestCase, override_settings
from harness.accounts import (
    ControlListening,
    bearer,
    fresh_registry,
    make_token,
    make_user,
    tunnel_closed,
)

from tunnels.auth import Refusal, authenticate
from tunnels.models import ApiToken, Plan, ReservedSubdomain, TunnelSession

CHANGELISTS = [
    "/admin/tunnels/tunnelsession/",
    "/admin/tunnels/apitoken/",
    "/admin/tunnels/plan/",
    "/admin/tunnels/reservedsubdomain/",
    "/admin/auth/user/",
]


class AdminPagesTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner = make_user("owner")
        cls.token, _ = make_token(cls.owner, name="laptop")
        Plan.objects.create(name="small")
        ReservedSubdomain.objects.create(name="owners-app", user=cls.owner)
        TunnelSession.objects.create(
            subdomain="my-app",
            owner=cls.owner,
            token=cls.token,
            client_ip="10.0.0.1",
            port=40001,
            max_sockets=10,
            sockets=3,
            bytes_in=2048,
        )

    def test_every_changelist_renders_for_a_superuser(self) -> None:
        self.client.force_login(self.operator)
        for url in CHANGELISTS:
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 200)

    def test_the_tunnel_list_links_the_public_url_and_shows_owner_token_and_sockets(self) -> None:
        self.client.force_login(self.operator)
        page = self.client.get("/admin/tunnels/tunnelsession/").content.decode()
        self.assertIn('href="http://my-app.localhost"', page)
        self.assertIn("laptop", page)
        self.assertIn("3/10", page)
        self.assertIn("2.0 KiB", page)

    def test_the_tunnel_list_filters_live_and_closed_and_searches_names(self) -> None:
        self.client.force_login(self.operator)
        self.assertContains(self.client.get("/admin/tunnels/tunnelsession/?state=live"), "my-app")
        self.assertNotContains(
            self.client.get("/admin/tunnels/tunnelsession/?state=closed"), "my-app"
        )
        self.assertNotContains(self.client.get("/admin/tunnels/tunnelsession/?q=other"), ">my-app<")

    def test_a_non_staff_user_is_sent_to_the_login_page(self) -> None:
        self.client.force_login(self.owner)
        self.assertEqual(self.client.get("/admin/tunnels/tunnelsession/").status_code, 302)

    def test_adding_a_token_shows_its_secret_once_and_stores_only_the_digest(self) -> None:
        self.client.force_login(self.operator)
        r = self.client.post(
            "/admin/tunnels/apitoken/add/",
            {"user": self.owner.pk, "name": "phone", "plan": "", "expires_0": "", "expires_1": ""},
            follow=True,
        )
        self.assertEqual(r.status_code, 200)
        shown = [str(m) for m in r.context["messages"] if "The new token is" in str(m)]
        self.assertEqual(len(shown), 1)
        text = shown[0].split("The new token is ")[1].split(" ")[0]
        row = ApiToken.objects.get(name="phone")
        self.assertTrue(text.startswith(f"lt_{row.prefix}"))
        self.assertNotIn(text[11:], row.digest)
        self.assertEqual(authenticate(text, "10.0.0.1").token_id, row.pk)
        again = self.client.get(f"/admin/tunnels/apitoken/{row.pk}/change/")
        self.assertNotContains(again, text)
        self.assertEqual(list(get_messages(again.wsgi_request)), [])

    def test_the_revoke_action_revokes_the_selected_tokens(self) -> None:
        _, text = make_token(self.owner, name="old")
        row = ApiToken.objects.get(name="old")
        self.client.force_login(self.operator)
        self.client.post(
            "/admin/tunnels/apitoken/", {"action": "revoke", "_selected_action": [row.pk]}
        )
        with self.assertRaises(Refusal):
            authenticate(text, "10.0.0.1")


@override_settings(RELAY_ALLOW_ANONYMOUS=True)
class AdminDisconnectTests(ControlListening):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner = make_user("owner")
        cls.token_row, cls.token = make_token(cls.owner)

    async def test_disconnect_sends_a_control_message_that_closes_the_tunnel(self) -> None:
        async with fresh_registry() as registry:
            listener = await self._listening()
            try:
                await self.async_client.get("/my-app", headers=bearer(self.token))
                await self.async_client.get("/other-app")
                row = await TunnelSession.objects.aget(subdomain="my-app", is_live=True)
                await self.async_client.aforce_login(self.operator)
                r = await self.async_client.post(
                    "/admin/tunnels/tunnelsession/",
                    {"action": "disconnect", "_selected_action": [row.pk]},
                )
                self.assertEqual(r.status_code, 302)
                await tunnel_closed(registry, "my-app")
                self.assertIsNotNone(registry.get("other-app"), "only the selected one closes")
            finally:
                await self._stop(listener)

    async def test_disconnect_and_revoke_closes_every_tunnel_of_the_token(self) -> None:
        async with fresh_registry() as registry:
            listener = await self._listening()
            try:
                await self.async_client.get("/my-app", headers=bearer(self.token))
                await self.async_client.get("/my-other-app", headers=bearer(self.token))
                row = await TunnelSession.objects.aget(subdomain="my-app", is_live=True)
                await self.async_client.aforce_login(self.operator)
                await self.async_client.post(
                    "/admin/tunnels/tunnelsession/",
                    {"action": "disconnect_and_revoke", "_selected_action": [row.pk]},
                )
                await tunnel_closed(registry, "my-app")
                await tunnel_closed(registry, "my-other-app")
                token = await ApiToken.objects.aget(pk=self.token_row.pk)
                self.assertTrue(token.revoked)
                again = await self.async_client.get("/my-app", headers=bearer(self.token))
                self.assertEqual(again.status_code, 401)
            finally:
                await self._stop(listener)

    async def test_a_staff_user_who_may_only_view_gets_no_disconnect_action(self) -> None:
        viewer = await sync_to_async(make_viewer)()
        await self.async_client.aforce_login(viewer)
        r = await self.async_client.get("/admin/tunnels/tunnelsession/")
        self.assertNotContains(r, "disconnect_and_revoke")


def make_viewer() -> User:
    user = make_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_tunnelsession"))
    return user
