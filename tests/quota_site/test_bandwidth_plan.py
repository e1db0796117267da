"""A plan's bandwidth from the database to the relay's memory and the pages: the plan field
(and RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND for the default plan) read at registration into
the owner's shaper (relay/pool/bandwidth.py), shared by the owner's tunnels and dropped with
the last of them; the account page and the admin's plan form show it."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.models import User
from django.forms.models import model_to_dict
from django.test import Client, RequestFactory, TestCase, override_settings
from harness.accounts import AddressedClient, bearer, isolated, make_token, make_user

from relay.pool import bandwidth
from relay.pool.registry import get_registry
from relay.protocol import BANDWIDTH_MIN_BYTES_PER_SECOND
from tunnels.models import Account, Plan

OWNER = ("127.0.0.1", 50000)
RATE = 3 * 1024 * 1024
LT = {"User-Agent": "tunnelsite-lt/0.1", "X-Tunnelsite-Pool": "upgrade"}


@override_settings(RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0)
class RegistrationTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        plan = Plan.objects.create(name="paced", max_bytes_per_second=RATE)
        cls.user = make_user("paced-user")
        Account.objects.create(user=cls.user, plan=plan)
        cls.secret = make_token(cls.user)[1]
        cls.free_secret = make_token(make_user("free-user"))[1]  # the default plan: no limit

    async def _register(self, target: str, client_id: str, secret: str | None) -> str:
        headers = {**LT, "X-Tunnelsite-Client": client_id, **(bearer(secret) if secret else {})}
        answer = await AddressedClient(OWNER).get(target, headers=headers)
        self.assertEqual(answer.status_code, 200, answer.content)
        return answer.json()["id"]

    @isolated
    async def test_an_accounts_tunnels_share_one_shaper_at_its_plans_rate_until_the_last_closes(
        self,
    ):
        registry = get_registry()
        first = registry.get(await self._register("/paced-one", "client-aaaa-0001", self.secret))
        second = registry.get(await self._register("/paced-two", "client-bbbb-0002", self.secret))
        assert first is not None and second is not None
        shaper = first.shaper
        assert shaper is not None
        self.assertIs(second.shaper, shaper)
        self.assertEqual((shaper.owner, shaper.rate), (f"user:{self.user.pk}", RATE))
        self.assertEqual((shaper.up.rate, shaper.down.rate), (RATE, RATE))
        registry.close(first, "test")
        self.assertIs(bandwidth.owners.owners[shaper.owner], shaper)  # one tunnel still live
        registry.close(second, "test")
        self.assertNotIn(shaper.owner, bandwidth.owners.owners)

    @isolated
    async def test_the_registration_answer_tells_our_lt_the_plans_bandwidth(self):
        headers = {**LT, "X-Tunnelsite-Client": "client-dddd-0004", **bearer(self.secret)}
        answer = await AddressedClient(OWNER).get("/paced-told", headers=headers)
        self.assertEqual(answer.json()["limits"]["bytes_per_second"], RATE)
        get_registry().close(get_registry().get("paced-told"), "test")

    @isolated
    async def test_a_reclaimed_tunnel_keeps_its_shaper(self):
        name = await self._register("/paced-back", "client-cccc-0003", self.secret)
        tunnel = get_registry().get(name)
        assert tunnel is not None and tunnel.shaper is not None
        shaper = tunnel.shaper
        self.assertEqual(await self._register("/paced-back", "client-cccc-0003", self.secret), name)
        self.assertIs(get_registry().get(name), tunnel)
        self.assertIs(tunnel.shaper, shaper)
        self.assertEqual(shaper.tunnels, 1)  # joined once, so dropped with it

    @isolated
    async def test_a_reclaim_takes_the_plans_new_rate_and_the_owner_goes_with_its_last_tunnel(
        self,
    ):
        """The plan's rate changed, lost its limit, gained one again, between reclaims of a
        live tunnel: each reclaim paces at the plan's rate now, the tunnel counts once in its
        owner's shaper, and closing it leaves the table empty."""
        plans = Plan.objects.filter(name="paced")
        client = "client-ffff-0006"
        name = await self._register("/paced-change", client, self.secret)
        tunnel = get_registry().get(name)
        assert tunnel is not None and tunnel.shaper is not None
        owner = tunnel.owner
        try:
            await plans.aupdate(max_bytes_per_second=2 * RATE)
            self.assertEqual(await self._register("/paced-change", client, self.secret), name)
            self.assertIs(get_registry().get(name), tunnel)
            assert tunnel.shaper is not None
            self.assertEqual((tunnel.shaper.up.rate, tunnel.shaper.down.rate), (2 * RATE,) * 2)
            self.assertEqual(tunnel.shaper.tunnels, 1)

            await plans.aupdate(max_bytes_per_second=0)  # the plan lost its limit
            await self._register("/paced-change", client, self.secret)
            self.assertIsNone(tunnel.shaper)
            self.assertNotIn(owner, bandwidth.owners.owners)

            await plans.aupdate(max_bytes_per_second=RATE)  # and gained one again
            await self._register("/paced-change", client, self.secret)
            await self._register("/paced-change", client, self.secret)
            assert tunnel.shaper is not None
            self.assertIs(bandwidth.owners.owners[owner], tunnel.shaper)
            self.assertEqual((tunnel.shaper.rate, tunnel.shaper.tunnels), (RATE, 1))
        finally:
            await plans.aupdate(max_bytes_per_second=RATE)
        get_registry().close(tunnel, "test")
        self.assertEqual(bandwidth.owners.owners, {})

    @isolated
    async def test_a_reclaim_of_a_tunnel_whose_shaper_the_table_no_longer_holds_joins_anew(
        self,
    ):
        name = await self._register("/paced-stale", "client-gggg-0007", self.secret)
        tunnel = get_registry().get(name)
        assert tunnel is not None and tunnel.shaper is not None
        stale = tunnel.shaper
        del bandwidth.owners.owners[stale.owner]  # released (as a table reset would)
        await self._register("/paced-stale", "client-gggg-0007", self.secret)
        assert tunnel.shaper is not None
        self.assertIsNot(tunnel.shaper, stale)
        self.assertIs(bandwidth.owners.owners[stale.owner], tunnel.shaper)
        self.assertEqual((tunnel.shaper.tunnels, stale.tunnels), (1, 0))
        get_registry().close(tunnel, "test")
        self.assertEqual(bandwidth.owners.owners, {})

    @isolated
    async def test_the_default_plan_has_no_limit(self):
        for target, secret in (("/?new", None), ("/free-one", self.free_secret)):
            tunnel = get_registry().get(await self._register(target, "client-dddd-0004", secret))
            assert tunnel is not None
            self.assertIsNone(tunnel.shaper)

    @isolated
    @override_settings(RELAY_DEFAULT_PLAN_MAX_BYTES_PER_SECOND=RATE)
    async def test_the_default_plans_setting_paces_anonymous_tunnels_per_address(self):
        tunnel = get_registry().get(await self._register("/?new", "client-eeee-0005", None))
        assert tunnel is not None and tunnel.shaper is not None
        self.assertEqual((tunnel.shaper.owner, tunnel.shaper.rate), (tunnel.owner, RATE))
        self.assertTrue(tunnel.owner.startswith("ip:"), tunnel.owner)


class PagesTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.user = make_user("page-user")
        Account.objects.create(
            user=cls.user, plan=Plan.objects.create(name="paced", max_bytes_per_second=RATE)
        )
        cls.operator = User.objects.create_superuser("op", "op@example.com", "pw")

    def test_the_account_page_shows_the_plans_bandwidth(self):
        client = Client()
        client.force_login(self.user)
        page = client.get("/account/").content.decode()
        self.assertIn("Bandwidth, all tunnels, each way", page)
        self.assertIn("3.0 MiB/s", page)

    def test_the_admins_plan_form_refuses_a_bandwidth_below_the_minimum(self):
        request = RequestFactory().get("/admin/")
        request.user = self.operator
        plan = Plan.objects.get(name="paced")
        form_class = admin.site._registry[Plan].get_form(request, plan)
        for value, valid in ((1, False), (BANDWIDTH_MIN_BYTES_PER_SECOND - 1, False),
                             (0, True), (BANDWIDTH_MIN_BYTES_PER_SECOND, True)):  # fmt: skip
            data = {**model_to_dict(plan), "max_bytes_per_second": value}
            form = form_class(data=data, instance=plan)
            errors = form.errors.get("max_bytes_per_second") if not form.is_valid() else None
            if valid:
                self.assertIsNone(errors, (value, form.errors))
            else:
                assert errors is not None, value
                self.assertIn("too low: use 0 for no limit, or at least 16384", errors[0])

    def test_the_admins_plan_form_has_the_bandwidth_field(self):
        client = Client()
        client.force_login(self.operator)
        plan = Plan.objects.get(name="paced")
        page = client.get(f"/admin/tunnels/plan/{plan.pk}/change/").content.decode()
        self.assertIn('name="max_bytes_per_second"', page)
        self.assertIn(f'value="{RATE}"', page)
