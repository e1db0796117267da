"""Where the account page's live tunnels come from: the relay's memory on a single relay,
with the rules in force in words and no secret; every node's session rows on a cluster."""

from __future__ import annotations

from django.test import TestCase, override_settings
from harness.accounts import bearer, fresh_registry, make_token, make_user

from relay import face
from relay.face import VisitorRules
from relay.pool.access import Access
from tunnels import usage
from tunnels.models import TunnelSession


class RulesInForceTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.token_row, cls.token = make_token(cls.owner)

    async def test_every_kind_of_rule_is_summarised_without_a_password_or_address(self) -> None:
        rules = VisitorRules(
            basic_auth=("alice:s3cret-one",),
            cidr_allow=(("203.0.113.0/24", "198.51.100.0/24"), ("192.0.2.0/24",)),
            cidr_deny=("203.0.113.9/32", "203.0.113.10/32"),
            team=True,
            warning=True,
        )
        async with fresh_registry() as registry:
            answer = await self.async_client.get("/my-app", headers=bearer(self.token))
            self.assertEqual(answer.status_code, 200)
            registry.get("my-app").access = Access(rules)
            [tunnel] = face.account_tunnels(self.owner.pk)
        self.assertEqual(
            tunnel.rules,
            ("password (1 user)", "allow 3 networks", "deny 2", "team only", "warning page"),
        )
        self.assertNotIn("s3cret", repr(tunnel))
        self.assertNotIn("203.0.113", repr(tunnel))

    async def test_a_tunnel_anyone_may_visit_has_no_rules_and_another_users_is_not_listed(
        self,
    ) -> None:
        async with fresh_registry():
            await self.async_client.get("/my-app", headers=bearer(self.token))
            self.assertEqual(face.account_tunnels(self.owner.pk)[0].rules, ())
            self.assertEqual(face.account_tunnels(self.owner.pk + 1000), [])


@override_settings(RELAY_NODE_NAME="node-a")
class ClusterNodeTests(TestCase):
    def test_on_a_node_the_live_tunnels_are_every_nodes_rows_of_the_user(self) -> None:
        owner, other = make_user("owner"), make_user("other")
        for name, who, node, live in (
            ("on-b", owner, "node-b", True),
            ("on-c", owner, "node-c", True),
            ("closed", owner, "node-b", False),
            ("theirs", other, "node-b", True),
        ):
            TunnelSession.objects.create(
                subdomain=name,
                owner=who,
                node=node,
                client_ip="192.0.2.7",
                port=1,
                max_sockets=10,
                sockets=3,
                requests=11,
                is_live=live,
            )
        live = usage.live_tunnels(owner.pk)
        self.assertEqual([t.name for t in live], ["on-b", "on-c"])
        self.assertEqual((live[0].sockets, live[0].counts.requests), (3, 11))
        self.assertEqual((live[0].rules, live[0].minutes), (None, ()))
        page = self.client
        page.force_login(owner)
        html = page.get("/account/data").json()["html"]["live"]
        self.assertIn("on-c", html)
        self.assertNotIn("theirs", html)
        self.assertNotIn("<svg", html)
        self.assertIn("shown on the node that holds it", html)
        self.assertNotIn("anyone may visit", html)
