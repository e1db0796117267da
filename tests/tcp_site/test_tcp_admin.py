"""TCP tunnels in the admin: the plan's TCP fields, reserving a port (the form's refusals in
words), and the sessions' list showing a TCP tunnel's address."""

from __future__ import annotations

from django.conf import settings
from django.test import TestCase, override_settings
from harness.accounts import make_user

from tunnels.models import Plan, ReservedTcpPort, TunnelSession

PORTS = (20000, 20099)
PLAN_FORM = {
    "name": "databases",
    "max_live_tunnels": 5,
    "max_sockets_per_tunnel": 10,
    "max_requests_per_minute": 0,
    "max_bytes_per_day": 0,
    "max_bytes_per_second": 0,
    "max_request_body_bytes": 0,
    "idle_timeout_s": 0,
    "max_reserved_names": 1,
    "visitor_auth": "",
    "cidr_allow": "",
    "cidr_deny": "",
    "warning_page": "",
}
ADD_PORT = "/admin/tunnels/reservedtcpport/add/"


class PlanTcpFieldsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)

    def setUp(self) -> None:
        self.client.force_login(self.operator)

    def test_the_plan_form_has_a_tcp_section_with_both_fields(self) -> None:
        page = self.client.get("/admin/tunnels/plan/add/").content.decode()
        section = page.index(">TCP tunnels</h2>")
        policy = page.index(">Visitor policy</h2>")
        self.assertLess(page.index('name="allow_tcp"'), policy)
        self.assertGreater(page.index('name="allow_tcp"'), section)
        self.assertGreater(page.index('name="max_tcp_tunnels"'), section)
        self.assertLess(page.index('name="max_tcp_tunnels"'), policy)

    def test_the_tcp_fields_are_saved(self) -> None:
        answer = self.client.post(
            "/admin/tunnels/plan/add/", {**PLAN_FORM, "allow_tcp": "on", "max_tcp_tunnels": 7}
        )
        self.assertEqual(answer.status_code, 302, answer.content.decode()[:2000])
        plan = Plan.objects.get(name="databases")
        self.assertEqual((plan.allow_tcp, plan.max_tcp_tunnels), (True, 7))
        off = self.client.post(
            "/admin/tunnels/plan/add/", {**PLAN_FORM, "name": "web", "max_tcp_tunnels": 0}
        )
        self.assertEqual(off.status_code, 302)
        self.assertFalse(Plan.objects.get(name="web").allow_tcp)

    def test_the_plan_list_shows_the_tcp_columns(self) -> None:
        Plan.objects.create(name="databases", allow_tcp=False, max_tcp_tunnels=9)
        page = self.client.get("/admin/tunnels/plan/").content.decode()
        self.assertIn("Allow TCP tunnels", page)
        self.assertIn('<td class="field-max_tcp_tunnels">9</td>', page)


@override_settings(RELAY_TCP_PORTS=PORTS)
class ReservedTcpPortAdminTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner = make_user("owner")
        cls.other = make_user("other-user")

    def setUp(self) -> None:
        self.client.force_login(self.operator)

    def test_a_port_is_reserved_for_a_user_with_the_users_autocomplete(self) -> None:
        page = self.client.get(ADD_PORT).content.decode()
        self.assertIn("admin-autocomplete", page)  # the user's field, as on reserved names
        answer = self.client.post(
            ADD_PORT, {"port": 20005, "user": self.owner.pk, "note": "staging database"}
        )
        self.assertEqual(answer.status_code, 302, answer.content.decode()[:2000])
        row = ReservedTcpPort.objects.get(port=20005)
        self.assertEqual((row.user_id, row.note), (self.owner.pk, "staging database"))

    def test_a_port_reserved_for_nobody(self) -> None:
        answer = self.client.post(ADD_PORT, {"port": 20006, "user": "", "note": ""})
        self.assertEqual(answer.status_code, 302)
        page = self.client.get("/admin/tunnels/reservedtcpport/").content.decode()
        self.assertIn("the operator (no tunnel gets it)", page)

    def test_a_port_outside_the_range_is_a_form_error_naming_the_range(self) -> None:
        for port in (19999, 20100, 80):
            with self.subTest(port=port):
                answer = self.client.post(ADD_PORT, {"port": port, "user": self.owner.pk})
                self.assertEqual(answer.status_code, 200)
                self.assertIn(
                    f"Port {port} is outside this relay&#x27;s TCP ports "
                    "(RELAY_TCP_PORTS=20000-20099)",
                    answer.content.decode(),
                )
        self.assertFalse(ReservedTcpPort.objects.exists())

    @override_settings(RELAY_TCP_PORTS=None)
    def test_no_port_can_be_reserved_while_tcp_is_off(self) -> None:
        answer = self.client.post(ADD_PORT, {"port": 20005, "user": self.owner.pk})
        self.assertEqual(answer.status_code, 200)
        self.assertIn("RELAY_TCP_PORTS is not set", answer.content.decode())
        self.assertFalse(ReservedTcpPort.objects.exists())

    @override_settings(RELAY_NODE_NAME="node-a")
    def test_on_a_cluster_a_port_of_another_nodes_range_is_accepted(self) -> None:
        answer = self.client.post(ADD_PORT, {"port": 30001, "user": self.owner.pk})
        self.assertEqual(answer.status_code, 302)
        self.assertTrue(ReservedTcpPort.objects.filter(port=30001).exists())

    def test_a_port_reserved_already_is_refused_in_words(self) -> None:
        ReservedTcpPort.objects.create(port=20005, user=self.other)
        answer = self.client.post(ADD_PORT, {"port": 20005, "user": self.owner.pk})
        self.assertEqual(answer.status_code, 200)
        self.assertIn(
            "Port 20005 is reserved already, for other-user: edit that reservation instead",
            answer.content.decode(),
        )
        self.assertEqual(ReservedTcpPort.objects.get(port=20005).user_id, self.other.pk)

    def test_editing_a_reservation_keeps_its_port(self) -> None:
        row = ReservedTcpPort.objects.create(port=20005, user=self.other)
        answer = self.client.post(
            f"/admin/tunnels/reservedtcpport/{row.pk}/change/",
            {"port": 20005, "user": self.owner.pk, "note": "moved"},
        )
        self.assertEqual(answer.status_code, 302, answer.content.decode()[:2000])
        self.assertEqual(ReservedTcpPort.objects.get(port=20005).user_id, self.owner.pk)

    def test_the_list_is_searched_by_port_and_by_user(self) -> None:
        ReservedTcpPort.objects.create(port=20005, user=self.owner)
        ReservedTcpPort.objects.create(port=20007, user=self.other)
        by_port = self.client.get("/admin/tunnels/reservedtcpport/?q=20007").content.decode()
        self.assertIn("other-user", by_port)
        self.assertNotIn(">owner<", by_port)
        by_user = self.client.get("/admin/tunnels/reservedtcpport/?q=other-user").content.decode()
        self.assertIn("20007", by_user)
        self.assertNotIn("20005", by_user)


class SessionListTests(TestCase):
    def test_a_tcp_tunnels_session_shows_its_tcp_address(self) -> None:
        operator = make_user("operator", is_staff=True, is_superuser=True)
        self.client.force_login(operator)
        TunnelSession.objects.create(
            subdomain="pgtunnel", client_ip="192.0.2.1", port=0, max_sockets=10, tcp_port=20042
        )
        TunnelSession.objects.create(
            subdomain="webtunnel", client_ip="192.0.2.1", port=0, max_sockets=10
        )
        page = self.client.get("/admin/tunnels/tunnelsession/").content.decode()
        self.assertIn(f"tcp://{settings.RELAY_TCP_HOST}:20042", page)
        self.assertIn('<td class="field-kind">HTTP</td>', page)
