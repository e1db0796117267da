"""Registration rules, through the real async views and the in-process registry."""

from __future__ import annotations

from datetime import timedelta

from django.test import TestCase, override_settings
from django.utils import timezone
from harness.accounts import (
    NPM_USER_AGENT,
    basic,
    bearer,
    fresh_registry,
    make_token,
    make_user,
)

from tunnels.models import Account, ApiToken, Plan, ReservedSubdomain, TunnelSession


@override_settings(RELAY_ALLOW_ANONYMOUS=False, RELAY_RESERVED_NAMES=frozenset({"mail"}))
class RegistrationTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.teammate = make_user("teammate")
        cls.owner_row, cls.owner_token = make_token(cls.owner, name="laptop")
        cls.owner_row2, cls.owner_token2 = make_token(cls.owner, name="desktop")
        cls.teammate_row, cls.teammate_token = make_token(cls.teammate)
        cls.small = Plan.objects.create(
            name="small",
            max_live_tunnels=1,
            max_sockets_per_tunnel=3,
            allow_custom_subdomains=False,
        )

    async def test_a_token_holder_gets_a_tunnel_owned_by_their_user(self) -> None:
        async with fresh_registry() as registry:
            r = await self.async_client.get("/?new", headers=bearer(self.owner_token))
            self.assertEqual(r.status_code, 200, r.content)
            name = r.json()["id"]
            self.assertEqual(registry.get(name).owner, f"user:{self.owner.pk}")
            row = await TunnelSession.objects.aget(subdomain=name, is_live=True)
            self.assertEqual(row.owner_id, self.owner.pk)
            self.assertEqual(row.token_id, self.owner_row.pk)
            token = await ApiToken.objects.aget(pk=self.owner_row.pk)
            self.assertIsNotNone(token.last_used)

    async def test_the_npm_client_may_send_its_token_as_basic_auth(self) -> None:
        async with fresh_registry():
            r = await self.async_client.get(
                "/?new", headers={**basic(self.owner_token), "User-Agent": NPM_USER_AGENT}
            )
            self.assertEqual(r.status_code, 200, r.content)

    async def test_the_advertised_max_conn_count_is_the_plans_socket_limit(self) -> None:
        await Account.objects.acreate(user=self.teammate, plan=self.small)
        async with fresh_registry():
            r = await self.async_client.get("/?new", headers=bearer(self.teammate_token))
            self.assertEqual(r.json()["max_conn_count"], 3)

    async def test_a_token_plan_overrides_the_users_plan(self) -> None:
        big = await Plan.objects.acreate(name="big", max_sockets_per_tunnel=7)
        await Account.objects.acreate(user=self.owner, plan=self.small)
        await ApiToken.objects.filter(pk=self.owner_row.pk).aupdate(plan=big)
        async with fresh_registry():
            r = await self.async_client.get("/?new", headers=bearer(self.owner_token))
            self.assertEqual(r.json()["max_conn_count"], 7)

    async def test_an_anonymous_visitor_gets_401_saying_how_to_pass_a_token(self) -> None:
        async with fresh_registry() as registry:
            r = await self.async_client.get("/?new")
            self.assertEqual(r.status_code, 401)
            self.assertIn("needs an API token", r.json()["message"])
            self.assertIn("--host <scheme>://TOKEN@", r.json()["message"])
            self.assertEqual(registry.tunnels, {})

    @override_settings(RELAY_ALLOW_ANONYMOUS=True)
    async def test_an_anonymous_visitor_is_owned_by_its_address_when_allowed(self) -> None:
        async with fresh_registry() as registry:
            r = await self.async_client.get("/?new")
            self.assertEqual(r.status_code, 200, r.content)
            self.assertEqual(registry.get(r.json()["id"]).owner, "ip:127.0.0.1")

    @override_settings(RELAY_ALLOW_ANONYMOUS=True)
    async def test_a_wrong_token_is_refused_even_when_anonymous_use_is_allowed(self) -> None:
        async with fresh_registry():
            r = await self.async_client.get("/?new", headers=bearer("lt_not-a-real-token"))
            self.assertEqual(r.status_code, 401)
            self.assertIn("not valid", r.json()["message"])

    async def test_refusals_are_not_logged_one_line_each(self) -> None:
        # Any client can repeat a refused registration at will (the npm client retries).
        async with fresh_registry():
            with self.assertNoLogs("django.request", "WARNING"):
                r = await self.async_client.get("/?new", headers=bearer("lt_not-a-real-token"))
                self.assertEqual(r.status_code, 401)

    async def test_a_revoked_token_gets_401(self) -> None:
        await ApiToken.objects.filter(pk=self.teammate_row.pk).aupdate(revoked_at=timezone.now())
        async with fresh_registry():
            r = await self.async_client.get("/?new", headers=bearer(self.teammate_token))
            self.assertEqual(r.status_code, 401)
            self.assertIn("revoked", r.json()["message"])

    async def test_an_expired_token_gets_401(self) -> None:
        await ApiToken.objects.filter(pk=self.teammate_row.pk).aupdate(expires=timezone.now())
        async with fresh_registry():
            r = await self.async_client.get("/?new", headers=bearer(self.teammate_token))
            self.assertEqual(r.status_code, 401)
            self.assertIn("expired", r.json()["message"])

    async def test_a_user_over_their_live_tunnel_limit_gets_429(self) -> None:
        await Account.objects.acreate(user=self.teammate, plan=self.small)
        async with fresh_registry() as registry:
            first = await self.async_client.get("/?new", headers=bearer(self.teammate_token))
            self.assertEqual(first.status_code, 200)
            second = await self.async_client.get("/?new", headers=bearer(self.teammate_token))
            self.assertEqual(second.status_code, 429)
            self.assertIn("Close one", second.json()["message"])
            self.assertEqual(len(registry.tunnels), 1)

    async def test_the_live_tunnel_limit_counts_every_token_of_the_user(self) -> None:
        await Account.objects.acreate(
            user=self.owner,
            plan=await Plan.objects.acreate(name="one", max_live_tunnels=1),
        )
        async with fresh_registry():
            first = await self.async_client.get("/?new", headers=bearer(self.owner_token))
            self.assertEqual(first.status_code, 200)
            second = await self.async_client.get("/?new", headers=bearer(self.owner_token2))
            self.assertEqual(second.status_code, 429)

    async def test_reclaiming_your_own_name_is_allowed_at_the_live_tunnel_limit(self) -> None:
        await Account.objects.acreate(
            user=self.owner,
            plan=await Plan.objects.acreate(name="one", max_live_tunnels=1),
        )
        async with fresh_registry():
            same_client = {"X-Tunnelsite-Client": "test-client-0001"}  # our lt reconnecting
            first = await self.async_client.get(
                "/my-app", headers={**bearer(self.owner_token), **same_client}
            )
            again = await self.async_client.get(
                "/my-app", headers={**bearer(self.owner_token2), **same_client}
            )
            self.assertEqual(again.status_code, 200, again.content)
            self.assertEqual(again.json()["port"], first.json()["port"])

    async def test_a_name_live_for_another_user_gets_409(self) -> None:
        async with fresh_registry():
            mine = await self.async_client.get("/my-app", headers=bearer(self.owner_token))
            self.assertEqual(mine.status_code, 200)
            theirs = await self.async_client.get("/my-app", headers=bearer(self.teammate_token))
            self.assertEqual(theirs.status_code, 409)
            self.assertIn("Pick another name", theirs.json()["message"])

    async def test_a_name_reserved_for_another_user_gets_403(self) -> None:
        await ReservedSubdomain.objects.acreate(name="owners-app", user=self.owner)
        async with fresh_registry():
            r = await self.async_client.get("/owners-app", headers=bearer(self.teammate_token))
            self.assertEqual(r.status_code, 403)
            self.assertIn("reserved", r.json()["message"])

    async def test_a_name_reserved_for_you_is_yours_even_when_your_plan_forbids_names(
        self,
    ) -> None:
        await Account.objects.acreate(user=self.owner, plan=self.small)
        await ReservedSubdomain.objects.acreate(name="owners-app", user=self.owner)
        async with fresh_registry():
            r = await self.async_client.get("/owners-app", headers=bearer(self.owner_token))
            self.assertEqual(r.status_code, 200, r.content)
            self.assertEqual(r.json()["id"], "owners-app")

    async def test_an_operator_name_is_refused_to_every_token_without_a_row(self) -> None:
        async with fresh_registry():
            r = await self.async_client.get("/mail", headers=bearer(self.owner_token))
            self.assertEqual(r.status_code, 403)
            self.assertIn("reserved", r.json()["message"])

    async def test_an_operator_reservation_row_without_user_is_refused_to_everyone(self) -> None:
        await ReservedSubdomain.objects.acreate(name="company")
        async with fresh_registry():
            r = await self.async_client.get("/company", headers=bearer(self.owner_token))
            self.assertEqual(r.status_code, 403)

    async def test_a_custom_name_is_refused_when_the_plan_does_not_include_it(self) -> None:
        await Account.objects.acreate(user=self.teammate, plan=self.small)
        async with fresh_registry():
            r = await self.async_client.get("/my-app", headers=bearer(self.teammate_token))
            self.assertEqual(r.status_code, 403)
            self.assertIn("Leave out --subdomain", r.json()["message"])

    @override_settings(RELAY_REGISTRATION_BURST=2, RELAY_REGISTRATIONS_PER_MINUTE=0.001)
    async def test_only_tokens_that_do_not_check_out_spend_the_addresss_refusal_bucket(
        self,
    ) -> None:
        """A good token refused for its name (reserved for another, here) says nothing of
        guessing: another user's valid token from the same address still registers. Wrong
        tokens do spend it. (The bucket is what this tests: its size is lowered.)"""
        async with fresh_registry():
            for _ in range(4):
                r = await self.async_client.get("/mail", headers=bearer(self.owner_token))
                self.assertEqual(r.status_code, 403, r.content)
            r = await self.async_client.get("/?new", headers=bearer(self.teammate_token))
            self.assertEqual(r.status_code, 200, r.content)
            for _ in range(2):
                r = await self.async_client.get("/?new", headers=bearer("lt_wrong_token"))
                self.assertEqual(r.status_code, 401, r.content)
            r = await self.async_client.get("/?new", headers=bearer(self.owner_token))
            self.assertEqual(r.status_code, 429, r.content)
            self.assertIn("wrong or unreadable token", r.json()["message"])

    async def test_the_npm_client_gets_203_with_the_message_so_it_stops_and_prints_it(
        self,
    ) -> None:
        async with fresh_registry():
            r = await self.async_client.get("/?new", headers={"User-Agent": NPM_USER_AGENT})
            self.assertEqual(r.status_code, 203)
            self.assertEqual(r["X-Tunnelsite-Status"], "401")
            self.assertIn("needs an API token", r.json()["message"])


@override_settings(RELAY_ALLOW_ANONYMOUS=True)
class CloseTunnelTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.teammate = make_user("teammate")
        _, cls.owner_token = make_token(cls.owner)
        _, cls.owner_token2 = make_token(cls.owner)
        _, cls.teammate_token = make_token(cls.teammate)

    async def test_the_owner_closes_a_tunnel_with_any_of_their_tokens(self) -> None:
        async with fresh_registry() as registry:
            await self.async_client.get("/my-app", headers=bearer(self.owner_token))
            r = await self.async_client.delete(
                "/api/tunnels/my-app", headers=bearer(self.owner_token2)
            )
            self.assertEqual(r.status_code, 204)
            self.assertIsNone(registry.get("my-app"))

    async def test_another_user_cannot_close_it(self) -> None:
        async with fresh_registry() as registry:
            await self.async_client.get("/my-app", headers=bearer(self.owner_token))
            r = await self.async_client.delete(
                "/api/tunnels/my-app", headers=bearer(self.teammate_token)
            )
            self.assertEqual(r.status_code, 403)
            self.assertIn("same API token", r.json()["message"])
            self.assertIsNotNone(registry.get("my-app"))

    async def test_an_anonymous_visitor_cannot_close_a_token_holders_tunnel(self) -> None:
        async with fresh_registry() as registry:
            await self.async_client.get("/my-app", headers=bearer(self.owner_token))
            r = await self.async_client.delete("/api/tunnels/my-app")
            self.assertEqual(r.status_code, 403)
            self.assertIsNotNone(registry.get("my-app"))

    async def test_a_wrong_token_cannot_close_anything(self) -> None:
        async with fresh_registry():
            await self.async_client.get("/my-app", headers=bearer(self.owner_token))
            r = await self.async_client.delete("/api/tunnels/my-app", headers=bearer("lt_nope"))
            self.assertEqual(r.status_code, 401)


@override_settings(RELAY_ALLOW_ANONYMOUS=False)
class TokenChangesAfterRegistrationTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.row, cls.token = make_token(cls.owner)

    async def _open(self) -> str:
        r = await self.async_client.get("/?new", headers=bearer(self.token))
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()["id"]

    async def test_a_token_that_expires_closes_its_live_tunnels(self) -> None:
        async with fresh_registry() as registry:
            name = await self._open()
            self.assertEqual(await registry.close_tunnels_of_unusable_tokens(), 0)
            await ApiToken.objects.filter(pk=self.row.pk).aupdate(
                expires=timezone.now() - timedelta(seconds=1)
            )
            self.assertEqual(await registry.close_tunnels_of_unusable_tokens(), 1)
            self.assertIsNone(registry.get(name))

    async def test_deactivating_the_user_closes_their_live_tunnels(self) -> None:
        async with fresh_registry() as registry:
            name = await self._open()
            self.owner.is_active = False
            await self.owner.asave(update_fields=["is_active"])
            self.assertEqual(await registry.close_tunnels_of_unusable_tokens(), 1)
            self.assertIsNone(registry.get(name))
