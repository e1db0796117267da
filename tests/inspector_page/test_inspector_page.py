"""The request inspector's page (`/account/tunnels/<name>/`, tunnels/inspector.py): only the
tunnel's owner (and staff when RELAY_INSPECT_STAFF) sees it; everyone else, and a tunnel that
is not live, gets the same 404 page; a plan without inspection says so. Real registrations
through the tunnel API, on a fresh registry per test."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.test import TestCase, override_settings
from harness.accounts import bearer, isolated, make_token, make_user

from relay import protocol
from tunnels.models import Account, Plan, TunnelSession

NAME = "my-hook"
PAGE = f"/account/tunnels/{NAME}/"
MISSING = "No live tunnel of yours called"


class InspectorPageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.other = make_user("other")
        cls.staff = make_user("operator", is_staff=True)
        cls.token = make_token(cls.owner)[1]

    async def _open(self, name: str = NAME, token: str | None = None) -> None:
        answer = await self.async_client.get(f"/{name}", headers=bearer(token or self.token))
        self.assertEqual(answer.status_code, 200, answer.content)

    @isolated
    async def test_the_owner_sees_the_inspector_wired_to_the_tunnel_api(self) -> None:
        await self._open()
        await self.async_client.aforce_login(self.owner)
        page = await self.async_client.get(PAGE)
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, 'id="inspector-requests"')
        self.assertContains(page, "tunnels/inspector.js")
        self.assertContains(page, "tunnels/inspector.css")
        config = page.context["config"]
        self.assertEqual(config["api"], protocol.INSPECT_PATH.format(name=NAME))
        self.assertEqual(config["keep"], 50)  # RELAY_INSPECT_REQUESTS's default
        self.assertEqual(config["body_bytes"], 64 * 1024)
        self.assertEqual(config["public_url"], f"http://{NAME}.localhost")
        # The replay waits as long as the relay may (socket wait + response timeout) and 10 s.
        relay_s = protocol.DEFAULT_SOCKET_WAIT_S + protocol.DEFAULT_RESPONSE_TIMEOUT_S
        self.assertEqual(config["replay_deadline_ms"], round((relay_s + 10) * 1000))
        # The replay's POST needs Django's CSRF token: the page carries it.
        self.assertContains(page, 'name="csrfmiddlewaretoken"')

    @isolated
    @override_settings(RELAY_RESPONSE_TIMEOUT_S=90)
    async def test_a_longer_response_timeout_lengthens_the_replays_deadline(self) -> None:
        await self._open()
        await self.async_client.aforce_login(self.owner)
        config = (await self.async_client.get(PAGE)).context["config"]
        expected = (protocol.DEFAULT_SOCKET_WAIT_S + 90 + 10) * 1000
        self.assertEqual(config["replay_deadline_ms"], round(expected))

    @isolated
    async def test_someone_signed_out_is_sent_to_sign_in_and_back(self) -> None:
        await self._open()
        page = await self.async_client.get(PAGE)
        self.assertEqual(page.status_code, 302)
        self.assertEqual(page["Location"], f"/accounts/login/?next={PAGE}")

    @isolated
    async def test_another_user_gets_the_page_of_a_tunnel_that_is_not_there(self) -> None:
        await self._open()
        await self.async_client.aforce_login(self.other)
        page = await self.async_client.get(PAGE)
        self.assertContains(page, MISSING, status_code=404)
        self.assertNotContains(page, "inspector.js", status_code=404)
        self.assertNotContains(page, "inspector-config", status_code=404)

    @isolated
    async def test_staff_who_do_not_own_it_get_404_by_default(self) -> None:
        await self._open()
        await self.async_client.aforce_login(self.staff)
        page = await self.async_client.get(PAGE)
        self.assertContains(page, MISSING, status_code=404)

    @isolated
    @override_settings(RELAY_INSPECT_STAFF=True, RELAY_ALLOW_ANONYMOUS=True)
    async def test_staff_see_any_tunnel_when_the_setting_allows_it(self) -> None:
        await self._open()
        anonymous = await self.async_client.get("/anon-hook")
        self.assertEqual(anonymous.status_code, 200)
        await self.async_client.aforce_login(self.staff)
        page = await self.async_client.get(PAGE)
        self.assertContains(page, 'id="inspector-requests"')
        # An anonymous tunnel is found, but the relay keeps nothing of it (no owner).
        page = await self.async_client.get("/account/tunnels/anon-hook/")
        self.assertContains(page, "Inspection is off")

    @isolated
    @override_settings(RELAY_INSPECT_STAFF=True)
    async def test_the_setting_lets_staff_in_but_not_other_users(self) -> None:
        await self._open()
        await self.async_client.aforce_login(self.other)
        page = await self.async_client.get(PAGE)
        self.assertContains(page, MISSING, status_code=404)

    @isolated
    async def test_a_tunnel_that_is_not_live_says_so_with_a_link_back(self) -> None:
        await self.async_client.aforce_login(self.owner)
        for url in (PAGE, "/account/tunnels/NOT_A-NAME!/"):
            with self.subTest(url=url):
                page = await self.async_client.get(url)
                self.assertContains(page, MISSING, status_code=404)
                self.assertContains(page, 'href="/account/"', status_code=404)

    @isolated
    async def test_a_tunnel_that_closed_is_not_live_any_more(self) -> None:
        await self._open()
        await self.async_client.aforce_login(self.owner)
        self.assertEqual((await self.async_client.get(PAGE)).status_code, 200)
        closed = await self.async_client.delete(f"/api/tunnels/{NAME}", headers=bearer(self.token))
        self.assertEqual(closed.status_code, 204)
        page = await self.async_client.get(PAGE)
        self.assertContains(page, MISSING, status_code=404)

    @isolated
    async def test_a_plan_without_inspection_says_so_and_loads_no_inspector(self) -> None:
        private = await Plan.objects.acreate(name="private", inspect_requests=False)
        await Account.objects.acreate(user=self.owner, plan=private)
        await self._open()
        await self.async_client.aforce_login(self.owner)
        page = await self.async_client.get(PAGE)
        self.assertContains(page, "Inspection is off for this tunnel")
        self.assertNotContains(page, "inspector.js")

    @isolated
    async def test_a_token_of_its_own_plan_decides_over_the_users_plan(self) -> None:
        private = await Plan.objects.acreate(name="private", inspect_requests=False)
        _, token = await sync_to_async(make_token)(self.owner, name="private", plan=private)
        await self._open(token=token)
        await self.async_client.aforce_login(self.owner)
        self.assertContains(await self.async_client.get(PAGE), "Inspection is off")

    @isolated
    async def test_a_plan_unticked_after_registration_still_shows_what_the_relay_keeps(
        self,
    ) -> None:
        # The relay decides at registration: until the tunnel registers again it keeps
        # capturing, so the page must not say "off" while requests are being kept.
        plan = await Plan.objects.acreate(name="watched", inspect_requests=True)
        await Account.objects.acreate(user=self.owner, plan=plan)
        await self._open()
        plan.inspect_requests = False
        await plan.asave()
        await self.async_client.aforce_login(self.owner)
        page = await self.async_client.get(PAGE)
        self.assertContains(page, 'id="inspector-requests"')
        self.assertNotContains(page, "Inspection is off")

    @isolated
    async def test_a_plan_ticked_after_registration_says_off_until_the_next_one(self) -> None:
        plan = await Plan.objects.acreate(name="private", inspect_requests=False)
        await Account.objects.acreate(user=self.owner, plan=plan)
        await self._open()
        plan.inspect_requests = True
        await plan.asave()
        await self.async_client.aforce_login(self.owner)
        page = await self.async_client.get(PAGE)
        self.assertContains(page, "Inspection is off")
        self.assertContains(page, "next registration")
        self.assertNotContains(page, "inspector.js")

    @isolated
    async def test_captured_names_in_the_page_are_escaped(self) -> None:
        await self._open()
        await self.async_client.aforce_login(self.owner)
        page = await self.async_client.get("/account/tunnels/<script>x/")
        self.assertEqual(page.status_code, 404)
        self.assertNotIn(b"<script>x", page.content)

    @isolated
    @override_settings(RELAY_NODE_NAME="node-a")
    async def test_on_a_cluster_node_the_live_rows_owner_decides(self) -> None:
        # Another node's tunnel: only its live row is here (the API call is forwarded).
        await TunnelSession.objects.acreate(
            subdomain="elsewhere",
            owner=self.owner,
            node="node-b",
            client_ip="10.0.0.1",
            port=0,
            max_sockets=10,
        )
        for user, status in ((self.owner, 200), (self.other, 404)):
            with self.subTest(user=user.username):
                await self.async_client.aforce_login(user)
                page = await self.async_client.get("/account/tunnels/elsewhere/")
                self.assertEqual(page.status_code, status)
