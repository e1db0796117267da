"""The admin's visitor policy on plans and reserved names, and the abuse report list."""

from __future__ import annotations

from django.contrib.auth.models import Permission
from django.test import TestCase
from harness.accounts import make_user

from tunnels.models import AbuseReport, Plan, ReservedSubdomain

PLAN_FORM = {
    "name": "office",
    "max_live_tunnels": 5,
    "max_sockets_per_tunnel": 10,
    "max_requests_per_minute": 0,
    "max_bytes_per_day": 0,
    "max_bytes_per_second": 0,
    "max_request_body_bytes": 0,
    "idle_timeout_s": 0,
    "allow_custom_subdomains": "on",
    "max_reserved_names": 1,  # issue 14's fields, in the plan's form since then
    "inspect_requests": "on",
    "max_tcp_tunnels": 2,  # issue 15's (allow_tcp unchecked: off)
    "visitor_auth": "team",
    "cidr_allow": "203.0.113.0/24\n2001:db8::/32",
    "cidr_deny": "",
    "warning_page": "on",
}


class PolicyAdminTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner = make_user("owner")

    def setUp(self) -> None:
        self.client.force_login(self.operator)

    def test_a_plans_visitor_policy_is_saved_from_its_own_section(self) -> None:
        page = self.client.get("/admin/tunnels/plan/add/").content.decode()
        self.assertIn("Visitor policy", page)
        answer = self.client.post("/admin/tunnels/plan/add/", PLAN_FORM)
        self.assertEqual(answer.status_code, 302, answer.content.decode()[:2000])
        plan = Plan.objects.get(name="office")
        self.assertEqual(
            (plan.visitor_auth, plan.cidr_allow, plan.warning_page),
            ("team", "203.0.113.0/24\n2001:db8::/32", "on"),
        )

    def test_an_invalid_network_line_is_a_form_error_not_a_500(self) -> None:
        for field, text in (
            ("cidr_allow", "203.0.113.0/24\nnot-a-network"),
            ("cidr_deny", "10.0.0.0/33"),
            ("cidr_allow", "\n".join(f"10.0.{i}.0/24" for i in range(65))),
        ):
            with self.subTest(field=field, text=text[:30]):
                answer = self.client.post("/admin/tunnels/plan/add/", {**PLAN_FORM, field: text})
                self.assertEqual(answer.status_code, 200)
                page = answer.content.decode()
                self.assertIn("errorlist", page)
                self.assertFalse(Plan.objects.filter(name="office").exists())

    def test_a_reserved_names_policy_and_its_errors(self) -> None:
        form = {
            "name": "owners-app",
            "user": self.owner.pk,
            "note": "",
            "visitor_auth": "",
            "cidr_allow": "",
            "cidr_deny": "2001:db8::/32",
            "warning_page": "off",
        }
        bad = self.client.post(
            "/admin/tunnels/reservedsubdomain/add/", {**form, "cidr_deny": "2001:db8::/129"}
        )
        self.assertEqual(bad.status_code, 200)
        self.assertIn("is not an address or network", bad.content.decode())
        good = self.client.post("/admin/tunnels/reservedsubdomain/add/", form)
        self.assertEqual(good.status_code, 302)
        row = ReservedSubdomain.objects.get(name="owners-app")
        self.assertEqual((row.cidr_deny, row.warning_page), ("2001:db8::/32", "off"))


class AbuseReportAdminTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        cls.owner = make_user("owner")
        cls.report = AbuseReport.objects.create(
            tunnel="my-app",
            url="http://my-app.localhost/login",
            owner=cls.owner,
            owner_address="192.0.2.10",
            note="a fake bank login page",
            reporter_address="2001:db8::7",
        )
        AbuseReport.objects.create(tunnel="gone-app", reporter_address="198.51.100.1")

    def setUp(self) -> None:
        self.client.force_login(self.operator)

    def test_the_list_shows_tunnel_url_owner_note_and_addresses(self) -> None:
        page = self.client.get("/admin/tunnels/abusereport/").content.decode()
        for text in (
            "my-app",
            "http://my-app.localhost/login",
            "owner",
            "a fake bank login page",
            "2001:db8::7",
            "192.0.2.10",
            "gone-app",
        ):
            self.assertIn(text, page)

    def test_mark_handled_is_the_one_change(self) -> None:
        answer = self.client.post(
            "/admin/tunnels/abusereport/",
            {"action": "mark_handled", "_selected_action": [self.report.pk]},
            follow=True,
        )
        self.assertIn("Marked 1 report(s) handled", answer.content.decode())
        self.report.refresh_from_db()
        self.assertTrue(self.report.handled)
        self.assertFalse(AbuseReport.objects.get(tunnel="gone-app").handled)
        page = self.client.get(f"/admin/tunnels/abusereport/{self.report.pk}/change/")
        self.assertEqual(page.status_code, 200)
        self.assertNotIn('name="_save"', page.content.decode())  # read-only
        self.client.post(
            f"/admin/tunnels/abusereport/{self.report.pk}/change/",
            {"note": "rewritten", "tunnel": "x", "reporter_address": "10.0.0.1"},
        )
        self.report.refresh_from_db()
        self.assertEqual(self.report.note, "a fake bank login page")

    def test_reports_cannot_be_added_by_hand(self) -> None:
        self.assertEqual(self.client.get("/admin/tunnels/abusereport/add/").status_code, 403)

    def test_staff_without_the_change_permission_cannot_mark_handled(self) -> None:
        viewer = make_user("viewer", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_abusereport"))
        self.client.force_login(viewer)
        page = self.client.get("/admin/tunnels/abusereport/").content.decode()
        self.assertIn("my-app", page)
        self.assertNotIn("mark_handled", page)
