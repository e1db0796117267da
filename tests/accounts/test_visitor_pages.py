"""The bare domain's visitor pages (tunnels/signin.py, tunnels/reports.py) with an owner, a
teammate (same group), another user, staff and an anonymous visitor.

relay.face.issue_ticket and signout_message belong to the relay's part of issue 13 (stubs
until it lands): the tests that reach them wrap them to see what the site asked for."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Iterator
from unittest import mock
from urllib.parse import parse_qs, urlsplit

from channels.layers import get_channel_layer
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client, TestCase, override_settings
from harness.accounts import AddressedClient, make_user

from relay import face, protocol
from tunnels import throttle
from tunnels.models import AbuseReport, TunnelSession

PASSWORD = "pw-for-tests-only"  # harness.accounts.make_user's


@contextlib.contextmanager
def tickets() -> Iterator[list[tuple[str, int]]]:
    """What the sign-in asked the relay for: (name, user id) per ticket."""
    issued: list[tuple[str, int]] = []

    def issue(name: str, user_id: int, owner_user_id: int | None) -> str:
        issued.append((name, user_id))
        return f"ticket-{len(issued)}"

    with mock.patch.object(face, "issue_ticket", issue):
        yield issued


class VisitorsTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.teammate = make_user("teammate")
        cls.other = make_user("other")
        cls.staff = make_user("operator", is_staff=True)
        devs = Group.objects.create(name="devs")
        devs.user_set.add(cls.owner, cls.teammate)
        Group.objects.create(name="elsewhere").user_set.add(cls.other)
        TunnelSession.objects.create(
            subdomain="my-app",
            owner=cls.owner,
            client_ip="192.0.2.10",
            port=40001,
            max_sockets=10,
        )
        TunnelSession.objects.create(
            subdomain="anon-app", client_ip="192.0.2.11", port=40002, max_sockets=10
        )

    def setUp(self) -> None:
        cache.clear()  # the per-address limits


class VisitTests(VisitorsTestCase):
    def visit(self, name: str = "my-app", next_path: str = "/page?x=1") -> object:
        return self.client.get(
            protocol.TEAM_SIGNIN_PATH,
            {protocol.TUNNEL_PARAM: name, protocol.NEXT_PARAM: next_path},
        )

    def assert_ticket_redirect(self, answer: object, name: str, next_path: str) -> None:
        self.assertEqual(answer.status_code, 302)
        target = urlsplit(answer["Location"])
        self.assertEqual(f"{target.scheme}://{target.netloc}", f"http://{name}.localhost")
        self.assertEqual(target.path, protocol.TICKET_PATH)
        query = parse_qs(target.query)
        self.assertEqual(query[protocol.NEXT_PARAM], [next_path])
        self.assertEqual(len(query[protocol.TICKET_PARAM]), 1)
        self.assertEqual(answer["Cache-Control"], "no-store")
        self.assertEqual(answer["Referrer-Policy"], "no-referrer")

    def test_an_anonymous_visitor_is_sent_to_sign_in_and_back_here(self) -> None:
        with tickets() as issued:
            answer = self.visit()
        self.assertEqual(answer.status_code, 302)
        location = urlsplit(answer["Location"])
        self.assertEqual(location.path, "/accounts/login/")
        back = parse_qs(location.query)["next"][0]
        self.assertEqual(urlsplit(back).path, protocol.TEAM_SIGNIN_PATH)
        self.assertEqual(parse_qs(urlsplit(back).query)["tunnel"], ["my-app"])
        self.assertEqual(issued, [])

    def test_the_owner_and_a_teammate_get_a_ticket_for_that_tunnel_only(self) -> None:
        for user in (self.owner, self.teammate):
            with self.subTest(user=user.username):
                self.client.force_login(user)
                with tickets() as issued:
                    answer = self.visit()
                self.assert_ticket_redirect(answer, "my-app", "/page?x=1")
                self.assertEqual(issued, [("my-app", user.pk)])

    def test_staff_may_visit_any_team_only_tunnel_and_an_anonymous_ones(self) -> None:
        self.client.force_login(self.staff)
        for name in ("my-app", "anon-app"):
            with self.subTest(name=name), tickets() as issued:
                self.assert_ticket_redirect(self.visit(name, "/"), name, "/")
                self.assertEqual(issued, [(name, self.staff.pk)])

    def test_another_user_is_refused_with_a_way_to_switch_accounts(self) -> None:
        self.client.force_login(self.other)
        for name in ("my-app", "anon-app"):
            with self.subTest(name=name), tickets() as issued:
                answer = self.visit(name)
                self.assertEqual(answer.status_code, 403)
                page = answer.content.decode()
                self.assertIn("signed in as other", page)
                self.assertIn("open only to its owner&#x27;s team", page)
                self.assertIn('action="/accounts/logout/"', page)
                self.assertIn("csrfmiddlewaretoken", page)
                self.assertEqual(issued, [])

    def test_switching_accounts_signs_out_and_comes_back_through_the_sign_in(self) -> None:
        self.client.force_login(self.other)
        page = self.visit().content.decode()
        again = page.split('name="next" value="', 1)[1].split('"', 1)[0]
        with mock.patch.object(face, "signout_message", lambda user_id: {"type": "x"}):
            answer = self.client.post("/accounts/logout/", {"next": again.replace("&amp;", "&")})
        self.assertEqual(answer.status_code, 302)
        login = urlsplit(answer["Location"])
        self.assertEqual(login.path, "/accounts/login/")
        signed_in = self.client.post(
            answer["Location"], {"username": "teammate", "password": PASSWORD}
        )
        self.assertEqual(urlsplit(signed_in["Location"]).path, protocol.TEAM_SIGNIN_PATH)
        with tickets() as issued:
            self.assert_ticket_redirect(
                self.client.get(signed_in["Location"]), "my-app", "/page?x=1"
            )
        self.assertEqual(issued, [("my-app", self.teammate.pk)])

    def test_a_tunnel_that_is_not_live_gets_a_page_saying_so(self) -> None:
        self.client.force_login(self.owner)
        TunnelSession.objects.filter(subdomain="my-app").update(is_live=False)
        answer = self.visit()
        self.assertEqual(answer.status_code, 404)
        self.assertIn("no live tunnel called &#x27;my-app&#x27;", answer.content.decode())

    def test_a_name_that_is_no_tunnels_is_a_400_page(self) -> None:
        self.client.force_login(self.owner)
        for name in ("", "UP", "a" * 70, "../etc", "my-app.evil.example"):
            with self.subTest(name=name):
                self.assertEqual(self.visit(name).status_code, 400)

    def test_next_must_be_a_path_on_the_tunnel_else_it_is_the_root(self) -> None:
        self.client.force_login(self.owner)
        cases = {
            "/ok/path?q=1#frag": "/ok/path?q=1#frag",
            "//evil.example/x": "/",
            "/\\evil.example": "/",
            "https://evil.example/": "/",
            "javascript:alert(1)": "/",
            "": "/",
            "/" + "a" * 3000: "/",
            "/with\nnewline": "/",
        }
        for given, expected in cases.items():
            with self.subTest(given=given), tickets():
                self.assert_ticket_redirect(self.visit(next_path=given), "my-app", expected)

    @override_settings(
        RELAY_PUBLIC_SCHEME="https", RELAY_DOMAIN="relay.example", RELAY_PUBLIC_PORT=8443
    )
    def test_the_ticket_goes_to_the_tunnels_public_url(self) -> None:
        self.client.force_login(self.owner)
        with tickets():
            answer = self.visit()
        self.assertTrue(
            answer["Location"].startswith(
                "https://my-app.relay.example:8443" + protocol.TICKET_PATH + "?"
            )
        )


class SignInTests(VisitorsTestCase):
    def test_the_sign_in_page_keeps_where_to_go_next(self) -> None:
        answer = self.client.get("/accounts/login/", {"next": "/visit/?tunnel=my-app"})
        self.assertEqual(answer.status_code, 200)
        page = answer.content.decode()
        self.assertIn('name="next" value="/visit/?tunnel=my-app"', page)
        self.assertIn("csrfmiddlewaretoken", page)

    def test_the_sign_in_page_names_the_tunnel_it_is_for_and_only_a_tunnel_name(self) -> None:
        cases = {
            "/visit/?tunnel=my-app&next=/x": "my-app",
            "/visit/?tunnel=My-App": "my-app",
            "/visit/?tunnel=%3Cb%3Eevil": None,  # not a tunnel name: not shown at all
            "/visit/?tunnel=" + "a" * 200: None,
            "/elsewhere/?tunnel=my-app": None,
            "": None,
        }
        for next_path, named in cases.items():
            with self.subTest(next_path=next_path):
                page = self.client.get("/accounts/login/", {"next": next_path}).content.decode()
                if named is None:
                    self.assertNotIn('id="for-tunnel"', page)
                else:
                    self.assertIn(f"The tunnel <strong>{named}</strong> is open only", page)

    def test_a_signed_in_user_is_told_so_with_a_sign_out_button(self) -> None:
        self.assertNotIn('id="signout"', self.client.get("/accounts/login/").content.decode())
        self.client.force_login(self.teammate)
        page = self.client.get("/accounts/login/").content.decode()
        self.assertIn("You are signed in as <strong>teammate</strong>", page)
        self.assertIn('action="/accounts/logout/"', page)
        self.assertIn('id="signout"', page)

    def test_signing_in_goes_back_to_the_tunnels_sign_in(self) -> None:
        answer = self.client.post(
            "/accounts/login/",
            {"username": "teammate", "password": PASSWORD, "next": "/visit/?tunnel=my-app"},
        )
        self.assertEqual(answer.status_code, 302)
        self.assertEqual(answer["Location"], "/visit/?tunnel=my-app")

    def test_a_wrong_password_is_refused_on_the_page(self) -> None:
        answer = self.client.post("/accounts/login/", {"username": "owner", "password": "nope"})
        self.assertEqual(answer.status_code, 200)
        self.assertIn("enter a correct username and password", answer.content.decode())
        self.assertNotIn("_auth_user_id", self.client.session)

    def test_sign_in_is_not_an_open_redirect(self) -> None:
        answer = self.client.post(
            "/accounts/login/",
            {"username": "owner", "password": PASSWORD, "next": "https://evil.example/"},
        )
        self.assertEqual(answer["Location"], "/account/")  # LOGIN_REDIRECT_URL, not the next

    def test_sign_in_attempts_are_limited_per_address_with_a_page_saying_when_to_retry(
        self,
    ) -> None:
        for _ in range(throttle.SIGNIN.limit):
            self.client.post("/accounts/login/", {"username": "owner", "password": "guess"})
        answer = self.client.post("/accounts/login/", {"username": "owner", "password": PASSWORD})
        self.assertEqual(answer.status_code, 429)
        self.assertGreater(int(answer["Retry-After"]), 0)
        self.assertIn(f"Try again in {answer['Retry-After']} seconds", answer.content.decode())
        self.assertNotIn("_auth_user_id", self.client.session)  # not even the right password

    async def test_another_address_is_not_held_by_anothers_attempts(self) -> None:
        for _ in range(throttle.SIGNIN.limit + 1):
            await self.async_client.post("/accounts/login/", {"username": "o", "password": "g"})
        elsewhere = AddressedClient(("198.51.100.20", 5000))
        answer = await elsewhere.post(
            "/accounts/login/", {"username": "owner", "password": PASSWORD}
        )
        self.assertEqual(answer.status_code, 302)

    def test_ipv6_addresses_of_one_network_share_a_limit(self) -> None:
        self.assertEqual(throttle.take(throttle.SIGNIN, "2001:db8::1"), 0)
        for _ in range(throttle.SIGNIN.limit - 1):
            throttle.take(throttle.SIGNIN, "2001:db8::2")
        self.assertGreater(throttle.take(throttle.SIGNIN, "2001:db8::3"), 0)
        self.assertEqual(throttle.take(throttle.SIGNIN, "2001:db8:1::1"), 0)

    def test_the_admin_keeps_its_own_sign_in(self) -> None:
        answer = self.client.get("/admin/login/")
        self.assertEqual(answer.status_code, 200)
        self.assertIn("Django", answer.content.decode())


class SignOutTests(VisitorsTestCase):
    async def test_signing_out_tells_every_relay_to_end_the_users_passes(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(face.CONTROL_GROUP, channel)
        message = {"type": "visitor.signout", "user_id": self.teammate.pk}
        try:
            await self.async_client.aforce_login(self.teammate)
            with mock.patch.object(face, "signout_message", return_value=message) as made:
                answer = await self.async_client.post("/accounts/logout/")
            self.assertEqual(answer.status_code, 200)
            self.assertIn("signed out", answer.content.decode())
            made.assert_called_once_with(self.teammate.pk)
            async with asyncio.timeout(2):
                self.assertEqual(await layer.receive(channel), message)
        finally:
            await layer.group_discard(face.CONTROL_GROUP, channel)
        session = await self.async_client.asession()
        self.assertIsNone(await session.aget("_auth_user_id"))

    @override_settings(
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1", "socket_timeout": 2}]},
            }
        }
    )
    def test_a_channel_layer_that_is_down_does_not_stop_the_sign_out(self) -> None:
        self.client.force_login(self.owner)
        message = {"type": "visitor.signout", "user_id": self.owner.pk}
        with (
            mock.patch.object(face, "signout_message", return_value=message),
            self.assertLogs("tunnels.signin", "WARNING") as logs,
        ):
            answer = self.client.post("/accounts/logout/")
        self.assertEqual(answer.status_code, 200)
        self.assertNotIn("_auth_user_id", self.client.session)
        self.assertIn("their tunnel passes end when they expire", logs.output[0])

    def test_sign_out_is_a_post(self) -> None:
        self.client.force_login(self.owner)
        self.assertEqual(self.client.get("/accounts/logout/").status_code, 405)

    def test_sign_out_is_csrf_protected(self) -> None:
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(self.owner)
        self.assertEqual(strict.post("/accounts/logout/").status_code, 403)


class ReportTests(VisitorsTestCase):
    URL = "http://my-app.localhost/bad/page"

    def report(self, client: Client | None = None, **data: str) -> object:
        return (client or self.client).post(
            "/report/", {"tunnel": "my-app", "url": self.URL, "note": "phishing", **data}
        )

    def test_the_form_names_the_tunnel_and_the_page(self) -> None:
        answer = self.client.get("/report/", {"tunnel": "my-app", "url": self.URL})
        self.assertEqual(answer.status_code, 200)
        page = answer.content.decode()
        self.assertIn("<code>my-app</code>", page)
        self.assertIn(self.URL, page)
        self.assertIn("csrfmiddlewaretoken", page)

    def test_a_report_records_the_live_tunnels_owner_and_the_reporters_address(self) -> None:
        answer = self.report()
        self.assertEqual(answer.status_code, 200)
        self.assertIn("Thank you", answer.content.decode())
        report = AbuseReport.objects.get()
        self.assertEqual(
            (report.tunnel, report.url, report.note, report.owner, report.owner_address),
            ("my-app", self.URL, "phishing", self.owner, "192.0.2.10"),
        )
        self.assertEqual(report.reporter_address, "127.0.0.1")
        self.assertFalse(report.handled)

    def test_a_name_that_is_not_live_is_recorded_all_the_same(self) -> None:
        self.assertEqual(self.report(tunnel="gone-app").status_code, 200)
        report = AbuseReport.objects.get()
        self.assertEqual(
            (report.tunnel, report.owner, report.owner_address), ("gone-app", None, None)
        )

    @override_settings(RELAY_TRUSTED_PROXIES=[ipaddress.ip_network("127.0.0.0/8")])
    async def test_behind_a_trusted_proxy_the_reporter_is_the_forwarded_address(self) -> None:
        await self.async_client.post(
            "/report/",
            {"tunnel": "my-app", "note": "x"},
            headers={"X-Forwarded-For": "2001:db8::7"},
        )
        report = await AbuseReport.objects.aget()
        self.assertEqual(report.reporter_address, "2001:db8::7")

    async def test_an_untrusted_peer_cannot_claim_another_address(self) -> None:
        await self.async_client.post(
            "/report/", {"tunnel": "my-app", "note": "x"}, headers={"X-Forwarded-For": "10.9.9.9"}
        )
        report = await AbuseReport.objects.aget()
        self.assertEqual(report.reporter_address, "127.0.0.1")

    def test_bad_input_is_a_form_error_and_records_nothing(self) -> None:
        cases = {
            "a note too long": {"note": "x" * 2001},
            "no tunnel": {"tunnel": ""},
            "not a tunnel name": {"tunnel": "../../admin"},
            "a url too long": {"url": "http://x/" + "a" * 2000},
            "a url with a newline": {"url": "http://x/\r\nSet-Cookie: a=b"},
        }
        for case, data in cases.items():
            with self.subTest(case=case):
                self.assertEqual(self.report(**data).status_code, 400)
        self.assertEqual(AbuseReport.objects.count(), 0)

    def test_a_link_without_a_tunnel_says_so(self) -> None:
        answer = self.client.get("/report/", {"tunnel": "<script>"})
        self.assertEqual(answer.status_code, 400)
        self.assertIn("does not name a tunnel", answer.content.decode())
        self.assertNotIn("<script>", answer.content.decode())

    def test_the_post_is_csrf_protected(self) -> None:
        self.assertEqual(self.report(Client(enforce_csrf_checks=True)).status_code, 403)
        self.assertEqual(AbuseReport.objects.count(), 0)

    def test_reports_are_limited_per_address(self) -> None:
        for _ in range(throttle.REPORT.limit):
            self.assertEqual(self.report().status_code, 200)
        answer = self.report()
        self.assertEqual(answer.status_code, 429)
        self.assertIn("Retry-After", answer)
        self.assertEqual(AbuseReport.objects.count(), throttle.REPORT.limit)

    def test_the_pages_names_are_refused_as_tunnel_names(self) -> None:
        with tickets():
            answer = self.client.get(
                "/visit", headers={"User-Agent": "axios/0.21.4"}
            )  # npm's `lt --subdomain visit`
        self.assertIn("reserved", answer.json()["message"])
        for name in ("visit", "report", "accounts"):
            answer = self.client.get(f"/{name}", headers={"User-Agent": "axios/0.21.4"})
            self.assertIn("reserved", answer.json()["message"], name)
