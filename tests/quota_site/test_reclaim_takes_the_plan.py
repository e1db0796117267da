"""A plan changed while a tunnel is live applies at its client's next registration, a reclaim
of the live tunnel included (the attacker's finding: a reclaim kept the old plan's limits, so
a client that keeps reconnecting escaped a downgrade for ever); what the account used is kept
across the change."""

from __future__ import annotations

from django.test import TestCase, override_settings
from harness.accounts import AddressedClient, bearer, isolated, make_token, make_user

from relay.pool.registry import get_registry
from tunnels.models import Account, Plan

OWNER = ("127.0.0.1", 50000)
LT = {"User-Agent": "tunnelsite-lt/0.1", "X-Tunnelsite-Pool": "upgrade"}
CLIENT = "client-plan-0001"


@override_settings(RELAY_ALLOW_ANONYMOUS=True, RELAY_PUBLIC_PORT=0)
class ReclaimTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        plan = Plan.objects.create(name="tiny", max_requests_per_minute=5, idle_timeout_s=600)
        cls.user = make_user("tiny-user")
        Account.objects.create(user=cls.user, plan=plan)
        cls.secret = make_token(cls.user)[1]

    async def _register(self, target: str) -> str:
        headers = {**LT, "X-Tunnelsite-Client": CLIENT, **bearer(self.secret)}
        answer = await AddressedClient(OWNER).get(target, headers=headers)
        self.assertEqual(answer.status_code, 200, answer.content)
        return answer.json()["id"]

    @isolated
    async def test_a_reclaim_takes_the_plans_limits_now_and_keeps_what_was_used(self) -> None:
        plans = Plan.objects.filter(name="tiny")
        name = await self._register("/tiny-app")
        tunnel = get_registry().get(name)
        assert tunnel is not None and tunnel.quota is not None
        usage = tunnel.quota.usage
        assert usage is not None
        usage.count_request()  # one request used this minute
        first_timer = tunnel.quota.idle_timer
        try:
            await plans.aupdate(max_requests_per_minute=1000, idle_timeout_s=60)
            self.assertEqual(await self._register("/tiny-app"), name)
            self.assertIs(get_registry().get(name), tunnel)  # reclaimed, not a new tunnel
            self.assertEqual((tunnel.quota.per_minute, tunnel.quota.idle_timeout_s), (1000, 60))
            self.assertIs(tunnel.quota.usage, usage)  # the account's use goes on
            self.assertEqual(usage.local_minute_requests, 1)
            assert first_timer is not None
            self.assertTrue(first_timer.cancelled())  # no second idle check of the old plan

            await plans.aupdate(max_requests_per_minute=5)  # a downgrade holds as well
            await self._register("/tiny-app")
            self.assertEqual(tunnel.quota.per_minute, 5)

            await plans.aupdate(max_requests_per_minute=0, idle_timeout_s=0)  # no limit left
            await self._register("/tiny-app")
            self.assertIsNone(tunnel.quota)
        finally:
            await plans.aupdate(max_requests_per_minute=5, idle_timeout_s=600)
            get_registry().close(tunnel, "test")
