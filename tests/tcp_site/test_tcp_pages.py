"""A TCP tunnel on the pages: the admin dashboard's row, the account page (its tcp://
address with a copy button, connections open now, bytes, no inspector link; the user's
reserved TCP ports; the plan's TCP line) and the inspector page of its name.

What the relay knows of a live TCP tunnel (its port, its visitor connections) is the relay
part of issue 15, merged separately: here it is fed as the values relay.face hands the pages
(face.dashboard_snapshot, face.account_tunnels, face.tunnel_status), or, on a cluster node,
as the live session rows every node writes."""

from __future__ import annotations

import time
from unittest import mock

from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import TestCase, override_settings
from django.utils import timezone
from harness.accounts import make_user

from relay import face
from relay.face import AccountTunnel, Counts, LiveTunnel, Snapshot, TunnelStatus
from relay.traffic import Rates
from tunnels.models import Account, Plan, ReservedTcpPort, TunnelSession

PORTS = (20000, 20099)
MIB = 1024 * 1024


def tcp_url(port: int) -> str:
    return f"tcp://{settings.RELAY_TCP_HOST}:{port}"


def account_tunnel(name: str, tcp_port: int = 0, connections: int = 0) -> AccountTunnel:
    return AccountTunnel(
        name=name,
        client_ip="192.0.2.5",
        sockets=3,
        max_sockets=10,
        counts=Counts(requests=4, bytes_in=2 * MIB, bytes_out=5 * MIB),
        opened_at=time.time() - 60,
        rules=("allow 1 network",),
        minutes=(),
        tcp_port=tcp_port,
        tcp_connections=connections,
    )


def snapshot(*live: LiveTunnel) -> Snapshot:
    return Snapshot(
        taken_at=time.time(), sockets=0, in_flight=0, rates=Rates(), minutes=[], live=list(live)
    )


@override_settings(RELAY_TCP_PORTS=PORTS)
class AccountPageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.other = make_user("other")

    def setUp(self) -> None:
        self.client.force_login(self.owner)

    def live_html(self, *tunnels: AccountTunnel) -> str:
        with mock.patch.object(face, "account_tunnels", return_value=list(tunnels)):
            html: str = self.client.get("/account/data").json()["html"]["live"]
        return html

    def test_a_tcp_tunnel_shows_its_address_with_a_copy_button_connections_and_bytes(self) -> None:
        html = self.live_html(account_tunnel("pg-tunnel", tcp_port=20042, connections=3))
        self.assertIn(
            f'<code class="tunnel-url tcp-url" id="tcp-url-pg-tunnel">{tcp_url(20042)}</code>',
            html,
        )
        self.assertIn('data-copy="tcp-url-pg-tunnel"', html)
        self.assertIn('<dt>Connections open</dt><dd class="tcp-connections">3</dd>', html)
        self.assertIn("2.0 MiB / 5.0 MiB", html)
        self.assertNotIn("Inspect requests", html)
        self.assertNotIn("/account/tunnels/pg-tunnel", html)
        self.assertNotIn("<dt>Requests</dt>", html)

    def test_an_http_tunnel_beside_it_keeps_its_link_and_inspector(self) -> None:
        html = self.live_html(
            account_tunnel("pg-tunnel", tcp_port=20042), account_tunnel("web-app")
        )
        self.assertIn("Inspect requests", html)
        self.assertIn('href="/account/tunnels/web-app/"', html)
        self.assertEqual(html.count('class="tunnel-url tcp-url"'), 1)

    def test_the_users_reserved_tcp_ports_are_listed_read_only(self) -> None:
        ReservedTcpPort.objects.create(port=20007, user=self.owner, note="staging db")
        ReservedTcpPort.objects.create(port=20008, user=self.other)
        page = self.client.get("/account/").content.decode()
        self.assertIn("Reserved TCP ports", page)
        self.assertIn('<li data-port="20007"><code>20007</code>', page)
        self.assertIn("staging db", page)
        self.assertNotIn("20008", page)
        self.assertIn("lt tcp --port PORT --remote-port 20007", page)
        self.assertIn("ask your relay's operator", page)
        fragment = self.client.get("/account/data").json()["html"]["tcp_ports"]
        self.assertIn("20007", fragment)
        self.assertNotIn("<form", fragment)

    def test_without_reserved_ports_it_says_to_ask_the_operator(self) -> None:
        page = self.client.get("/account/").content.decode()
        self.assertIn("No reserved TCP ports", page)
        self.assertIn("ports are reserved in the admin", page)

    def test_the_plan_says_tcp_is_allowed_and_how_many(self) -> None:
        html = self.client.get("/account/data").json()["html"]["usage"]
        self.assertIn('<dd class="tcp-plan">allowed, up to 2 live', html)  # the default plan
        self.assertIn("Live TCP tunnels", html)
        plan = Plan.objects.create(name="no-tcp", allow_tcp=False)
        Account.objects.create(user=self.owner, plan=plan)
        html = self.client.get("/account/data").json()["html"]["usage"]
        self.assertIn('<dd class="tcp-plan">not on your plan</dd>', html)
        self.assertNotIn("Live TCP tunnels", html)

    def test_the_live_tcp_tunnels_are_counted_against_the_plans_limit(self) -> None:
        with mock.patch.object(
            face,
            "account_tunnels",
            return_value=[account_tunnel("pg-tunnel", 20042), account_tunnel("web-app")],
        ):
            html = self.client.get("/account/data").json()["html"]["usage"]
        self.assertIn('aria-label="Live TCP tunnels">1 of 2</meter>', html)

    def test_a_closed_tcp_tunnel_in_the_history_says_it_was_tcp_and_its_port(self) -> None:
        for name, port in (("pg-closed", 20031), ("web-closed", None)):
            TunnelSession.objects.create(
                subdomain=name,
                owner=self.owner,
                client_ip="192.0.2.7",
                port=0,
                max_sockets=10,
                is_live=False,
                closed_at=timezone.now(),
                tcp_port=port,
            )
        html = self.client.get("/account/data").json()["html"]["history"]
        self.assertIn(
            'pg-closed <span class="badge" title="a TCP tunnel (lt tcp)">TCP :20031', html
        )
        self.assertEqual(html.count("TCP :"), 1)

    @override_settings(RELAY_TCP_PORTS=None)
    def test_on_a_relay_without_tcp_the_plan_says_so_and_there_is_no_ports_section(self) -> None:
        page = self.client.get("/account/").content.decode()
        self.assertIn('<dd class="tcp-plan">not offered by this relay</dd>', page)
        self.assertNotIn("Reserved TCP ports", page)


@override_settings(RELAY_TCP_PORTS=PORTS, RELAY_NODE_NAME="node-a")
class ClusterAccountPageTests(TestCase):
    def test_another_nodes_tcp_tunnel_shows_its_address_from_its_row(self) -> None:
        owner = make_user("owner")
        TunnelSession.objects.create(
            subdomain="pg-on-b",
            owner=owner,
            node="node-b",
            client_ip="192.0.2.7",
            port=0,
            max_sockets=10,
            bytes_in=3 * MIB,
            tcp_port=20011,
        )
        self.client.force_login(owner)
        with mock.patch.object(face, "account_tunnels", return_value=[]):
            html = self.client.get("/account/data").json()["html"]["live"]
        self.assertIn(tcp_url(20011), html)
        self.assertIn("3.0 MiB", html)
        self.assertNotIn("Inspect requests", html)


@override_settings(RELAY_TCP_PORTS=PORTS)
class DashboardTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner = make_user("owner")

    def live_tunnel(self, name: str, tcp_port: int = 0, connections: int = 0) -> LiveTunnel:
        return LiveTunnel(
            name=name,
            user_id=self.owner.pk,
            token_id=None,
            client_ip="192.0.2.5",
            sockets=2,
            max_sockets=10,
            counts=Counts(requests=0, bytes_in=7 * MIB, bytes_out=MIB),
            opened_at=time.time(),
            tcp_port=tcp_port,
            tcp_connections=connections,
        )

    def test_a_tcp_tunnels_row_shows_its_address_connections_and_bytes(self) -> None:
        self.client.force_login(self.operator)
        shot = snapshot(self.live_tunnel("pg-tunnel", 20042, 5), self.live_tunnel("web-app"))
        with mock.patch.object(face, "dashboard_snapshot", return_value=shot):
            page = self.client.get("/admin/dashboard/").content.decode()
            data = self.client.get("/admin/dashboard/data").json()
        self.assertIn(f'pg-tunnel <code class="tcp-url">{tcp_url(20042)}</code>', page)
        self.assertIn('<td class="tcp-connections">5 open</td>', page)
        self.assertIn('<td class="tcp-connections">-</td>', page)  # the HTTP tunnel's
        self.assertIn("<td>7.0 MiB</td>", page)
        self.assertIn('href="http://web-app.', page)
        self.assertNotIn('href="http://pg-tunnel.', page)
        self.assertIn(tcp_url(20042), data["tunnels_html"])

    @override_settings(RELAY_NODE_NAME="node-a")
    def test_on_a_cluster_this_nodes_connections_show_and_another_nodes_do_not(self) -> None:
        for name, node, port in (("pg-here", "node-a", 20001), ("pg-there", "node-b", 20002)):
            TunnelSession.objects.create(
                subdomain=name,
                owner=self.owner,
                node=node,
                client_ip="192.0.2.7",
                port=0,
                max_sockets=10,
                tcp_port=port,
            )
        self.client.force_login(self.operator)
        shot = snapshot(self.live_tunnel("pg-here", 20001, 4))
        with mock.patch.object(face, "dashboard_snapshot", return_value=shot):
            page = self.client.get("/admin/dashboard/").content.decode()
        self.assertIn(tcp_url(20001), page)
        self.assertIn(tcp_url(20002), page)
        self.assertIn('<td class="tcp-connections">4 open</td>', page)
        self.assertIn('<td class="tcp-connections">-</td>', page)


@override_settings(RELAY_TCP_PORTS=PORTS)
class InspectorPageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")

    async def test_a_tcp_tunnels_inspector_says_it_is_a_tcp_tunnel(self) -> None:
        status = TunnelStatus(
            name="pg-tunnel",
            owner=f"user:{self.owner.pk}",
            client_id="",
            connected_sockets=1,
            opened_at=time.time(),
            user_id=self.owner.pk,
            tcp_port=20042,
        )
        await self.async_client.aforce_login(self.owner)
        with mock.patch.object(face, "tunnel_status", return_value=status):
            answer = await self.async_client.get("/account/tunnels/pg-tunnel/")
        self.assertEqual(answer.status_code, 200)
        page = answer.content.decode()
        self.assertIn('data-state="tcp"', page)
        self.assertIn("pg-tunnel is a TCP tunnel", page)
        self.assertIn(tcp_url(20042), page)
        self.assertNotIn("inspector.js", page)

    @override_settings(RELAY_NODE_NAME="node-a")
    async def test_on_a_cluster_another_nodes_tcp_tunnel_says_so_too(self) -> None:
        await TunnelSession.objects.acreate(
            subdomain="pg-on-b",
            owner=self.owner,
            node="node-b",
            client_ip="192.0.2.7",
            port=0,
            max_sockets=10,
            tcp_port=20011,
        )
        await self.async_client.aforce_login(self.owner)
        answer = await self.async_client.get("/account/tunnels/pg-on-b/")
        self.assertContains(answer, "pg-on-b is a TCP tunnel")

    async def test_another_users_tcp_tunnel_is_the_same_404_as_none(self) -> None:
        other = await sync_to_async(make_user)("other")
        status = TunnelStatus(
            name="pg-tunnel",
            owner=f"user:{self.owner.pk}",
            client_id="",
            connected_sockets=1,
            opened_at=time.time(),
            user_id=self.owner.pk,
            tcp_port=20042,
        )
        await self.async_client.aforce_login(other)
        with mock.patch.object(face, "tunnel_status", return_value=status):
            answer = await self.async_client.get("/account/tunnels/pg-tunnel/")
        self.assertEqual(answer.status_code, 404)
        self.assertNotIn("20042", answer.content.decode())
