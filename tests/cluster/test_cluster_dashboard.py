"""The admin dashboard of a cluster node: every node's live tunnels and each node's load,
from the Node and TunnelSession rows (a single relay keeps showing its own memory)."""

from __future__ import annotations

from datetime import timedelta

from django.test import TestCase, override_settings
from django.utils import timezone
from harness.accounts import fresh_registry, make_token, make_user

from tunnels.models import Node, TunnelSession

DATA = "/admin/dashboard/data"


def _node(name: str, age_s: float, **load: object) -> Node:
    now = timezone.now()
    return Node.objects.create(
        name=name,
        advertise=f"10.0.0.{len(name)}:8080",
        started_at=now - timedelta(hours=1),
        last_heartbeat=now - timedelta(seconds=age_s),
        **load,
    )


def _tunnel(name: str, node: str, live: bool = True, **extra: object) -> TunnelSession:
    fields = {"client_ip": "192.0.2.1", "port": 40000, "max_sockets": 10, **extra}
    return TunnelSession.objects.create(subdomain=name, node=node, is_live=live, **fields)


class ClusterDashboardTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        owner = make_user("owner")
        token, _ = make_token(owner, name="laptop")
        _node("alpha", 0.5, tunnels=1, sockets=4, in_flight=1, requests=10, forwarded=3)
        _node("bravo", 1.0, tunnels=1, sockets=6, in_flight=2, requests=20, forwarded=0)
        _node("charlie", 60.0, draining=True, tunnels=9, sockets=90, in_flight=9)
        _tunnel("on-alpha", "alpha", sockets=4, requests=10, owner=owner, token=token)
        _tunnel("on-bravo", "bravo", sockets=6, requests=20)
        _tunnel("closed-one", "bravo", live=False)

    async def _data(self) -> dict:
        async with fresh_registry():  # this node's memory holds none of these tunnels
            await self.async_client.aforce_login(self.operator)
            answer = await self.async_client.get(DATA)
        self.assertEqual(answer.status_code, 200)
        return answer.json()

    @override_settings(RELAY_NODE_NAME="alpha", RELAY_NODE_EXPIRY_S=6.0)
    async def test_a_node_lists_every_nodes_live_tunnels_with_their_node(self) -> None:
        data = await self._data()
        self.assertEqual(data["node"], "alpha")
        self.assertEqual(data["live"], ["on-alpha", "on-bravo"])
        self.assertEqual(data["live_nodes"], {"on-alpha": "alpha", "on-bravo": "bravo"})
        self.assertEqual(data["tunnels"], 2)
        self.assertEqual((data["sockets"], data["in_flight"]), (10, 3))  # live nodes only
        html = data["tunnels_html"]
        self.assertIn('<td class="tunnel-node">bravo</td>', html)
        self.assertIn("<td>owner</td>", html)
        self.assertIn("<td>laptop</td>", html)
        self.assertIn("<td>4/10</td>", html)

    @override_settings(RELAY_NODE_NAME="alpha", RELAY_NODE_EXPIRY_S=6.0)
    async def test_a_node_shows_each_nodes_state_and_load(self) -> None:
        data = await self._data()
        nodes = {node["name"]: node for node in data["nodes"]}
        self.assertEqual(list(nodes), ["alpha", "bravo", "charlie"])
        self.assertEqual(
            {name: node["state"] for name, node in nodes.items()},
            {"alpha": "serving", "bravo": "serving", "charlie": "dead"},
        )
        self.assertEqual(
            nodes["bravo"],
            {
                "name": "bravo",
                "address": "10.0.0.5:8080",
                "state": "serving",
                "alive": True,
                "heartbeat_age_s": nodes["bravo"]["heartbeat_age_s"],
                "draining": False,
                "tunnels": 1,
                "sockets": 6,
                "in_flight": 2,
                "requests": 20,
                "forwarded": 0,
            },
        )
        self.assertGreaterEqual(nodes["charlie"]["heartbeat_age_s"], 60)
        html = data["nodes_html"]
        self.assertIn('<tr class="relay-node" data-name="charlie" data-state="dead">', html)
        self.assertIn("alpha (this one)", html)

    async def test_a_single_relay_shows_only_its_own_memory(self) -> None:
        data = await self._data()
        self.assertEqual(data["live"], [])
        self.assertEqual((data["node"], data["nodes"], data["live_nodes"]), (None, [], {}))
        self.assertNotIn("relay-nodes", data["nodes_html"])
        self.assertIn("No tunnels are live on this relay.", data["tunnels_html"])

    @override_settings(RELAY_NODE_EXPIRY_S=6.0)
    def test_the_admin_lists_the_nodes_read_only(self) -> None:
        self.client.force_login(self.operator)
        page = self.client.get("/admin/tunnels/node/")
        self.assertContains(page, "10.0.0.7:8080")
        # charlie's heartbeat is 60 s old when the test starts, a little more by now.
        self.assertRegex(page.content.decode(), r"dead \(silent 6[0-9] s\)")
        self.assertContains(page, '<td class="field-state">serving</td>', html=False)
        self.assertEqual(self.client.get("/admin/tunnels/node/add/").status_code, 403)
        node = Node.objects.get(name="bravo")
        self.assertEqual(
            self.client.post(f"/admin/tunnels/node/{node.pk}/delete/").status_code, 403
        )
