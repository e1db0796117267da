"""plans.limits_for: the one rule the relay, the account page and the inspector page share for
which plan applies (the token's own, else the user's, else the default plan)."""

from __future__ import annotations

from django.conf import settings
from django.test import TestCase
from harness.accounts import make_token, make_user

from tunnels import auth
from tunnels.models import Account, Plan
from tunnels.plans import limits_for


class LimitsForTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.user_plan = Plan.objects.create(name="user plan", max_live_tunnels=7)
        cls.token_plan = Plan.objects.create(
            name="token plan", max_live_tunnels=2, inspect_requests=False
        )
        cls.user = make_user("planned")
        Account.objects.create(user=cls.user, plan=cls.user_plan)
        cls.plain, cls.plain_secret = make_token(cls.user, "plain")
        cls.own, cls.own_secret = make_token(cls.user, "own", plan=cls.token_plan)
        cls.bare = make_user("bare")

    def test_a_token_with_its_own_plan_uses_it(self) -> None:
        self.assertEqual(limits_for(self.user.pk, self.own.pk).plan, "token plan")
        self.assertFalse(limits_for(self.user.pk, self.own.pk).inspect)

    def test_a_token_without_one_uses_its_users(self) -> None:
        self.assertEqual(limits_for(self.user.pk, self.plain.pk).plan, "user plan")
        self.assertEqual(limits_for(self.user.pk).max_live_tunnels, 7)

    def test_a_user_without_a_plan_and_anonymous_tunnels_get_the_default(self) -> None:
        for user_id in (self.bare.pk, None):
            limits = limits_for(user_id)
            self.assertEqual(limits.plan, "default")
            self.assertEqual(limits.inspect, settings.RELAY_DEFAULT_PLAN_INSPECT)

    def test_it_agrees_with_what_registration_grants(self) -> None:
        for token, secret in ((self.plain, self.plain_secret), (self.own, self.own_secret)):
            grant = auth.authenticate(secret, "192.0.2.1", touch=False)
            self.assertEqual(grant.limits, limits_for(self.user.pk, token.pk))
