"""One limit on guessing passwords for both sign-in forms (the relay's /accounts/login/ and the
admin's /admin/login/): failed attempts only, per address, with the 429 page; a per-user limit
on /visit/'s tickets; the sign-in page names the tunnel it is for."""

from __future__ import annotations

from django.core.cache import cache
from django.test import Client, TestCase
from harness.accounts import make_user

from relay import protocol
from tunnels import throttle
from tunnels.models import TunnelSession

PASSWORD = "pw-for-tests-only"  # harness.accounts.make_user's
FORMS = ("/accounts/login/", "/admin/login/")


class SignInLimitTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = make_user("operator", is_staff=True)
        cls.owner = make_user("owner")
        TunnelSession.objects.create(
            subdomain="my-app", owner=cls.owner, client_ip="192.0.2.10", port=1, max_sockets=1
        )

    def setUp(self) -> None:
        cache.clear()

    def fail(self, url: str) -> int:
        return Client().post(url, {"username": "operator", "password": "guess"}).status_code

    def assert_limited(self, url: str) -> None:
        answer = Client().post(url, {"username": "operator", "password": PASSWORD})
        self.assertEqual(answer.status_code, 429, url)
        self.assertIn(f"Try again in {answer['Retry-After']} seconds", answer.content.decode())

    def test_the_admins_form_is_limited_like_the_relays(self) -> None:
        for url in FORMS:
            with self.subTest(url=url):
                cache.clear()
                for _ in range(throttle.SIGNIN.limit):
                    self.assertEqual(self.fail(url), 200)
                self.assert_limited(url)

    def test_both_forms_spend_one_budget(self) -> None:
        for i in range(throttle.SIGNIN.limit):
            self.assertEqual(self.fail(FORMS[i % 2]), 200)
        for url in FORMS:
            self.assert_limited(url)

    def test_successful_sign_ins_spend_nothing(self) -> None:
        for i in range(throttle.SIGNIN.limit * 2):
            signed = Client().post(FORMS[i % 2], {"username": "operator", "password": PASSWORD})
            self.assertEqual(signed.status_code, 302, FORMS[i % 2])
        for _ in range(throttle.SIGNIN.limit):
            self.assertEqual(self.fail("/accounts/login/"), 200, "the whole budget is left")
        self.assert_limited("/accounts/login/")

    def test_a_signed_in_visitor_guessing_others_passwords_is_limited_too(self) -> None:
        signed_in = Client()
        signed_in.force_login(self.owner)
        for i in range(throttle.SIGNIN.limit):
            guess = {"username": "operator", "password": f"guess-{i}"}
            self.assertEqual(signed_in.post(FORMS[i % 2], guess).status_code, 200)
        refused = signed_in.post(FORMS[0], {"username": "operator", "password": PASSWORD})
        self.assertEqual(refused.status_code, 429)

    def test_getting_the_forms_spends_nothing(self) -> None:
        for _ in range(throttle.SIGNIN.limit + 1):
            for url in FORMS:
                self.assertEqual(Client().get(url).status_code, 200)
        self.assertEqual(self.fail("/admin/login/"), 200)

    def test_tickets_are_limited_per_user_not_per_tunnel_or_address(self) -> None:
        owner = Client()
        owner.force_login(self.owner)
        visit = {protocol.TUNNEL_PARAM: "my-app", protocol.NEXT_PARAM: "/"}
        for _ in range(throttle.TICKET.limit):
            self.assertEqual(owner.get(protocol.TEAM_SIGNIN_PATH, visit).status_code, 302)
        refused = owner.get(protocol.TEAM_SIGNIN_PATH, visit)
        self.assertEqual(refused.status_code, 429)
        self.assertGreater(int(refused["Retry-After"]), 0)
        self.assertIn("visits to team-only tunnels from your account", refused.content.decode())
        staff = Client()  # the same address, another user
        staff.force_login(self.staff)
        self.assertEqual(staff.get(protocol.TEAM_SIGNIN_PATH, visit).status_code, 302)

    def test_the_sign_in_page_says_which_tunnel_it_is_for(self) -> None:
        page = Client().get("/accounts/login/", {"next": "/visit/?tunnel=my-app&next=/x"})
        self.assertContains(page, "<h1>Sign in to visit my-app</h1>", html=False)
        self.assertContains(page, "<title>Sign in to visit my-app · tunnelsite</title>")
        for next_url in (
            "//evil.example/visit/?tunnel=my-app",
            "https://evil.example/visit/?tunnel=my-app",
            "/visit/?tunnel=%3Cscript%3Ealert(1)%3C/script%3E",
        ):
            with self.subTest(next_url=next_url):
                other = Client().get("/accounts/login/", {"next": next_url})
                self.assertContains(other, "<h1>Sign in to your account</h1>")
                self.assertNotContains(other, "<script>alert")

    def test_the_sign_in_page_mentions_team_only_tunnels_only_when_one_sent_you(self) -> None:
        for next_url in ("", "/account/", "/account/device/?code=BCDF-GHJK"):
            with self.subTest(next_url=next_url):
                page = Client().get("/accounts/login/", {"next": next_url} if next_url else {})
                self.assertContains(page, "<h1>Sign in to your account</h1>")
                self.assertNotContains(page, "team")
        team = Client().get("/accounts/login/", {"next": "/visit/?tunnel=my-app&next=/x"})
        self.assertContains(team, "open only to its owner's team")

    def test_the_sign_in_page_has_the_account_pages_look(self) -> None:
        page = Client().get("/accounts/login/", {"next": "/account/"})
        self.assertContains(page, 'href="/static/tunnels/account.css"')
        self.assertContains(page, '<header class="top">')
        self.assertContains(page, 'class="button button-primary">Sign in</button>')
