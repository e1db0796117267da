"""Visitor rules at registration, through the real async views and the in-process registry:
the header from our lt, the plan's and the reserved name's policy, the npm client (no header).

Until the relay stores a tunnel's rules (relay/pool/access.py, another part of issue 13), the
rules the site hands to relay.face.register are read by a spy that calls the real function."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from unittest import mock

from django.test import TestCase, override_settings
from harness.accounts import NPM_USER_AGENT, bearer, fresh_registry, make_token, make_user

from relay import face, protocol
from relay.face import VisitorRules
from tunnels import auth
from tunnels.access import Policy
from tunnels.models import Account, ApiToken, Plan, ReservedSubdomain

SECRET = "correct-horse-battery"


def access(**rules: object) -> dict[str, str]:
    return {protocol.ACCESS_HEADER: json.dumps(rules, separators=(",", ":"))}


@contextlib.contextmanager
def rules_given() -> Iterator[list[VisitorRules | None]]:
    """The `rules` of every face.register call (the real one runs)."""
    seen: list[VisitorRules | None] = []
    real = face.register

    async def spy(*args: object, **kwargs: object) -> face.Registration:
        seen.append(kwargs.get("rules"))  # type: ignore[arg-type]
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    with mock.patch.object(face, "register", spy):
        yield seen


class RegistrationRulesTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.owner_row, cls.owner_token = make_token(cls.owner)

    async def test_our_lts_rules_reach_the_relay_with_the_owners_name(self) -> None:
        async with fresh_registry() as registry:
            with rules_given() as seen:
                r = await self.async_client.get(
                    "/?new",
                    headers={
                        **bearer(self.owner_token),
                        **access(
                            basic_auth=[f"alice:{SECRET}"],
                            cidr_allow=["2001:db8::1/32", "203.0.113.9/24"],
                            cidr_deny=["203.0.113.7"],
                        ),
                    },
                )
            self.assertEqual(r.status_code, 200, r.content)
            self.assertIsNotNone(registry.get(r.json()["id"]))
            self.assertEqual(
                seen,
                [
                    VisitorRules(
                        basic_auth=(f"alice:{SECRET}",),
                        cidr_allow=(("2001:db8::/32", "203.0.113.0/24"),),
                        cidr_deny=("203.0.113.7/32",),
                        owner_label="owner",
                    )
                ],
            )

    async def test_a_bad_header_is_a_400_naming_the_problem_and_no_tunnel_opens(self) -> None:
        async with fresh_registry() as registry:
            with self.assertLogs(level=logging.DEBUG) as logs:
                logging.getLogger("tests").debug("the capture works")
                r = await self.async_client.get(
                    "/?new",
                    headers={**bearer(self.owner_token), **access(basic_auth=[SECRET])},
                )
            self.assertNotIn(SECRET, "\n".join(logs.output))
            self.assertEqual(r.status_code, 400)
            message = r.json()["message"]
            self.assertIn('basic_auth entry 1 must be "user:password"', message)
            self.assertNotIn(SECRET, r.content.decode())
            self.assertEqual(registry.tunnels, {})

    async def test_the_npm_client_would_get_its_203_for_a_bad_header(self) -> None:
        async with fresh_registry():
            r = await self.async_client.get(
                "/?new",
                headers={
                    **bearer(self.owner_token),
                    "User-Agent": NPM_USER_AGENT,
                    protocol.ACCESS_HEADER: "not json",
                },
            )
            self.assertEqual(r.status_code, protocol.NPM_CLIENT_ERROR_STATUS)
            self.assertIn("not JSON", r.json()["message"])

    @override_settings(RELAY_ALLOW_ANONYMOUS=True)
    async def test_an_anonymous_team_only_tunnel_is_refused_saying_lt_login(self) -> None:
        async with fresh_registry() as registry:
            r = await self.async_client.get("/?new", headers=access(private=True))
            self.assertEqual(r.status_code, 403)
            self.assertIn("lt login", r.json()["message"])
            self.assertEqual(registry.tunnels, {})

    @override_settings(RELAY_ALLOW_ANONYMOUS=True)
    async def test_an_anonymous_tunnel_gets_the_warning_page_by_default(self) -> None:
        async with fresh_registry():
            with rules_given() as seen:
                r = await self.async_client.get("/?new", headers=access(cidr_deny=["::/0"]))
            self.assertEqual(r.status_code, 200, r.content)
            self.assertEqual(
                seen, [VisitorRules(cidr_deny=("::/0",), warning=True, owner_label="")]
            )

    async def test_the_plans_policy_applies_to_the_npm_client_which_sends_no_rules(self) -> None:
        plan = await Plan.objects.acreate(
            name="team-plan",
            visitor_auth="team",
            cidr_allow="10.0.0.0/8\n2001:db8::/32",
            cidr_deny="10.66.0.0/16",
            warning_page="on",
        )
        await Account.objects.acreate(user=self.owner, plan=plan)
        async with fresh_registry():
            with rules_given() as seen:
                r = await self.async_client.get(
                    "/?new", headers={**bearer(self.owner_token), "User-Agent": NPM_USER_AGENT}
                )
            self.assertEqual(r.status_code, 200, r.content)
            self.assertEqual(
                seen,
                [
                    VisitorRules(
                        cidr_allow=(("10.0.0.0/8", "2001:db8::/32"),),
                        cidr_deny=("10.66.0.0/16",),
                        team=True,
                        warning=True,
                        owner_label="owner",
                    )
                ],
            )

    async def test_a_tokens_plan_is_the_policy_over_the_users_plan(self) -> None:
        await Account.objects.acreate(
            user=self.owner, plan=await Plan.objects.acreate(name="open", visitor_auth="")
        )
        strict = await Plan.objects.acreate(name="strict", visitor_auth="required")
        await ApiToken.objects.filter(pk=self.owner_row.pk).aupdate(plan=strict)
        async with fresh_registry():
            with rules_given() as seen:
                await self.async_client.get("/?new", headers=bearer(self.owner_token))
                await self.async_client.get(
                    "/?new", headers={**bearer(self.owner_token), **access(basic_auth=["a:b"])}
                )
            first, second = seen
            assert first is not None and second is not None
            self.assertTrue(first.team)  # required, and no password: team only
            self.assertFalse(second.team)  # required, and a password given
            self.assertEqual(second.basic_auth, ("a:b",))

    async def test_a_reserved_names_policy_adds_to_the_plans_and_the_clients(self) -> None:
        await Account.objects.acreate(
            user=self.owner,
            plan=await Plan.objects.acreate(name="office", cidr_allow="198.51.100.0/24"),
        )
        await ReservedSubdomain.objects.acreate(
            name="owners-app",
            user=self.owner,
            cidr_allow="198.51.100.0/28",
            cidr_deny="198.51.100.1",
            warning_page="off",
        )
        async with fresh_registry():
            with rules_given() as seen:
                r = await self.async_client.get(
                    "/owners-app",
                    headers={**bearer(self.owner_token), **access(cidr_allow=["0.0.0.0/0"])},
                )
                other = await self.async_client.get("/other-app", headers=bearer(self.owner_token))
            self.assertEqual(r.status_code, 200, r.content)
            self.assertEqual(other.status_code, 200, other.content)
            reserved, plain = seen
            assert reserved is not None and plain is not None
            self.assertEqual(
                reserved.cidr_allow,
                (("0.0.0.0/0",), ("198.51.100.0/24",), ("198.51.100.0/28",)),
            )
            self.assertEqual(reserved.cidr_deny, ("198.51.100.1/32",))
            self.assertEqual(plain.cidr_allow, (("198.51.100.0/24",),))  # the name's: not here

    def test_the_policy_comes_in_registrations_one_database_call_with_no_extra_query(
        self,
    ) -> None:
        """The plan and the reserved row come from the queries registration made anyway."""
        plan = Plan.objects.create(name="p", visitor_auth="team")
        Account.objects.create(user=self.owner, plan=plan)
        ReservedSubdomain.objects.create(name="owners-app", user=self.owner, warning_page="on")
        # token+plan, last_used, account+plan, active suspensions, reserved row: the policy
        # rows come with the queries registration makes anyway, not in queries of their own.
        with self.assertNumQueries(5):
            grant = auth.grant_registration(self.owner_token, "127.0.0.1", "owners-app")
        self.assertEqual(grant.username, "owner")
        self.assertEqual(grant.plan_policy, Policy(visitor_auth="team"))
        self.assertEqual(grant.name_policy, Policy(warning_page="on"))
