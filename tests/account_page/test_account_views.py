"""The account page (tunnels/account.py) with its owner, another user and an anonymous
visitor: every page and JSON endpoint shows a user only their own tunnels, tokens, names and
usage; another's token or name is a 404; POSTs need the CSRF token; a new token's secret is
in the answer to its POST only."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from django.contrib.auth.models import User
from django.test import Client, TestCase, override_settings
from django.utils import timezone
from harness.accounts import bearer, fresh_registry, make_token, make_user

from relay import protocol
from tunnels import device_codes, tokens
from tunnels.models import Account, ApiToken, Plan, ReservedSubdomain, Suspension, TunnelSession

PAGE, DATA = "/account/", "/account/data"
TOKENS, NAMES = "/account/tokens", "/account/names"
SECRET = re.compile(r"lt_[A-Za-z0-9_-]{20,}")


def access(**rules: object) -> dict[str, str]:
    """Our lt's visitor rules header (relay.protocol.ACCESS_HEADER)."""
    return {protocol.ACCESS_HEADER: json.dumps(rules)}


def post_token(client: Client, form: dict[str, str]) -> Any:
    """The new-token form as a browser sends it: with the nonce of the page it was on."""
    nonce = client.get(PAGE).context["token_nonce"]
    return client.post(TOKENS, {**form, "nonce": nonce})


def revoke_url(pk: int) -> str:
    return f"/account/tokens/{pk}/revoke"


def release_url(pk: int) -> str:
    return f"/account/names/{pk}/release"


class AccountTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.other = make_user("other")
        cls.owner_token, cls.owner_secret = make_token(cls.owner, name="owner-laptop")
        cls.other_token, cls.other_secret = make_token(cls.other, name="other-ci")
        cls.owner_name = ReservedSubdomain.objects.create(name="owner-name", user=cls.owner)
        cls.other_name = ReservedSubdomain.objects.create(name="other-name", user=cls.other)

    def signed_in(self, user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client


class AnonymousTests(AccountTestCase):
    def test_the_page_sends_an_anonymous_visitor_to_the_sign_in_with_next(self) -> None:
        answer = self.client.get(PAGE)
        self.assertEqual(answer.status_code, 302)
        self.assertEqual(answer["Location"], "/accounts/login/?next=/account/")

    def test_the_data_endpoint_answers_401_with_a_message(self) -> None:
        answer = self.client.get(DATA)
        self.assertEqual(answer.status_code, 401)
        self.assertEqual(answer.json(), {"message": "Sign in to see your account."})

    def test_the_data_endpoint_is_read_with_get_only(self) -> None:
        answer = self.signed_in(self.owner).post(DATA)
        self.assertEqual(answer.status_code, 405)
        self.assertEqual(answer.json(), {"message": "Read your account's figures with GET."})

    def test_a_deactivated_user_is_signed_out_of_the_page(self) -> None:
        client = self.signed_in(self.owner)
        self.owner.is_active = False
        self.owner.save(update_fields=["is_active"])
        self.assertEqual(client.get(PAGE).status_code, 302)
        self.assertEqual(client.get(DATA).status_code, 401)

    def test_every_post_sends_an_anonymous_visitor_to_the_sign_in_and_changes_nothing(
        self,
    ) -> None:
        posts = {
            TOKENS: {"name": "x", "expiry": "7"},
            revoke_url(self.owner_token.pk): {},
            NAMES: {"name": "anon-name"},
            release_url(self.owner_name.pk): {},
        }
        for url, form in posts.items():
            with self.subTest(url=url):
                answer = self.client.post(url, form)
                self.assertEqual(answer.status_code, 302)
                self.assertTrue(answer["Location"].startswith("/accounts/login/?next="))
        self.assertEqual(ApiToken.objects.count(), 2)
        self.assertFalse(ApiToken.objects.filter(revoked_at__isnull=False).exists())
        self.assertEqual(ReservedSubdomain.objects.count(), 2)


class WhatEachUserSeesTests(AccountTestCase):
    def test_the_page_shows_the_users_own_tokens_and_names_and_nobody_elses(self) -> None:
        for user, mine, theirs in (
            (self.owner, ("owner-laptop", "owner-name"), ("other-ci", "other-name")),
            (self.other, ("other-ci", "other-name"), ("owner-laptop", "owner-name")),
        ):
            with self.subTest(user=user.username):
                page = self.signed_in(user).get(PAGE)
                self.assertEqual(page.status_code, 200)
                self.assertEqual(
                    page["Cache-Control"], "max-age=0, no-cache, no-store, must-revalidate, private"
                )
                for text in mine:
                    self.assertContains(page, text)
                for text in theirs:
                    self.assertNotContains(page, text)

    def test_the_data_endpoint_gives_each_user_only_their_own_fragments(self) -> None:
        data = self.signed_in(self.owner).get(DATA).json()
        html = "".join(data["html"].values())
        self.assertIn("owner-laptop", html)
        self.assertIn("owner-name", html)
        self.assertNotIn("other-ci", html)
        self.assertNotIn("other-name", html)
        self.assertEqual(
            set(data["html"]), {"live", "history", "usage", "tokens", "names", "tcp_ports"}
        )

    def test_no_secret_of_any_token_is_on_the_page(self) -> None:
        page = self.signed_in(self.owner).get(PAGE).content.decode()
        self.assertNotIn(self.owner_secret, page)
        self.assertEqual(SECRET.findall(page), [])
        self.assertIn(f"lt_{self.owner_token.prefix}…", page)

    def test_a_token_is_shown_active_expired_or_revoked(self) -> None:
        expired, _ = ApiToken.issue(self.owner, name="old", expires_in=datetime.timedelta(-1))
        revoked, _ = ApiToken.issue(self.owner, name="gone")
        revoked.revoke()
        page = self.signed_in(self.owner).get(PAGE)
        for token, state in (
            (self.owner_token, "active"),
            (expired, "expired"),
            (revoked, "revoked"),
        ):
            with self.subTest(state=state):
                self.assertRegex(
                    page.content.decode(),
                    rf'(?s)data-token="{token.pk}">(?:(?!</tr>).)*badge-{state}"',
                )

    def test_with_nothing_yet_each_part_says_what_to_do(self) -> None:
        newcomer = make_user("newcomer")
        page = self.signed_in(newcomer).get(PAGE)
        self.assertContains(page, "No tunnels yet.")
        self.assertContains(page, "lt --port 3000 --host http://localhost")
        self.assertContains(page, "No tokens yet.")
        self.assertContains(page, "No reserved names.")
        self.assertContains(page, "Tunnels you close show up here")


class TokenTests(AccountTestCase):
    def test_a_new_token_is_shown_once_in_the_answer_to_its_post(self) -> None:
        client = self.signed_in(self.owner)
        answer = post_token(client, {"name": "desktop", "expiry": "30"})
        self.assertEqual(answer.status_code, 200)
        self.assertIn("no-store", answer["Cache-Control"])
        token = ApiToken.objects.get(user=self.owner, name="desktop")
        secret = answer.context["new_secret"]
        self.assertEqual(tokens.split(secret)[0], token.prefix)
        self.assertContains(answer, f'<code class="secret" id="new-token-secret">{secret}</code>')
        self.assertContains(answer, "lt login --host http://localhost --token</pre>")
        command = answer.content.decode().split('id="new-token-command">')[1].split("</pre>")[0]
        self.assertNotIn(secret, command, "a secret on a command line is in ps and history")
        self.assertNotIn(secret, str(dict(client.session)))
        again = client.get(PAGE)
        self.assertNotContains(again, secret)
        self.assertNotContains(again, 'id="new-token"')
        self.assertContains(again, "desktop")

    def test_control_and_bidi_characters_are_taken_out_of_a_tokens_name(self) -> None:
        client = self.signed_in(self.owner)
        answer = post_token(client, {"name": "ci\u202e\r\nrevoked", "expiry": "7"})
        self.assertEqual(answer.status_code, 200)
        self.assertContains(answer, "<td><bdi>cirevoked</bdi></td>")
        only_controls = post_token(client, {"name": "\u202e\u200b", "expiry": "7"})
        self.assertContains(only_controls, "a name you can read", status_code=400)
        self.assertEqual(ApiToken.objects.filter(name__startswith="ci").count(), 1)

    def test_the_admin_and_createtoken_keep_plain_names_too(self) -> None:
        token, _ = ApiToken.issue(self.owner, name="x\u2066y\x00")  # createtoken's, lt's
        self.assertEqual(token.name, "xy")
        token.name = "z\u202ew"  # the admin's change form saves the model
        token.save()
        token.refresh_from_db()
        self.assertEqual(token.name, "zw")

    def test_a_resubmitted_form_makes_no_second_token(self) -> None:
        client = self.signed_in(self.owner)
        nonce = client.get(PAGE).context["token_nonce"]
        first = client.post(TOKENS, {"name": "once", "expiry": "7", "nonce": nonce})
        self.assertEqual(first.status_code, 200)
        again = client.post(TOKENS, {"name": "once", "expiry": "7", "nonce": nonce})  # reload
        self.assertContains(again, "This token was created already", status_code=409)
        self.assertNotContains(again, 'id="new-token-secret"', status_code=409)
        self.assertEqual(ApiToken.objects.filter(name="once").count(), 1)

    def test_a_form_without_a_known_nonce_makes_no_token(self) -> None:
        client = self.signed_in(self.owner)
        for form in ({"name": "x", "expiry": "7"}, {"name": "x", "expiry": "7", "nonce": "forged"}):
            answer = client.post(TOKENS, form)
            self.assertContains(answer, "out of date", status_code=409)
        self.assertFalse(ApiToken.objects.filter(name="x").exists())
        other = self.signed_in(self.other)  # another session's nonce is not this one's
        nonce = other.get(PAGE).context["token_nonce"]
        self.assertEqual(client.post(TOKENS, {"name": "x", "nonce": nonce}).status_code, 409)

    def test_the_expiry_chosen_is_the_tokens(self) -> None:
        client = self.signed_in(self.owner)
        for expiry, days in (("7", 7), ("90", 90), ("", None)):
            with self.subTest(expiry=expiry):
                post_token(client, {"name": f"for-{expiry or 'ever'}", "expiry": expiry})
                token = ApiToken.objects.get(name=f"for-{expiry or 'ever'}")
                if days is None:
                    self.assertIsNone(token.expires)
                else:
                    left = token.expires - timezone.now()
                    self.assertAlmostEqual(left.total_seconds(), days * 86400, delta=60)

    def test_a_token_without_a_name_or_with_an_unknown_expiry_is_refused_with_the_page(
        self,
    ) -> None:
        client = self.signed_in(self.owner)
        for form, says in (
            ({"name": "", "expiry": "7"}, "Name: This field is required."),
            ({"name": "x", "expiry": "365"}, "Select a valid choice."),
        ):
            with self.subTest(form=form):
                answer = post_token(client, form)
                self.assertEqual(answer.status_code, 400)
                self.assertContains(answer, says, status_code=400)
        self.assertEqual(ApiToken.objects.filter(user=self.owner).count(), 1)

    def test_the_owner_revokes_their_token(self) -> None:
        answer = self.signed_in(self.owner).post(revoke_url(self.owner_token.pk))
        self.assertRedirects(answer, PAGE, fetch_redirect_response=False)
        self.owner_token.refresh_from_db()
        self.assertTrue(self.owner_token.revoked)

    def test_another_users_token_is_a_404_and_stays_usable(self) -> None:
        answer = self.signed_in(self.owner).post(revoke_url(self.other_token.pk))
        self.assertEqual(answer.status_code, 404)
        self.other_token.refresh_from_db()
        self.assertFalse(self.other_token.revoked)

    def test_revoking_needs_a_post(self) -> None:
        answer = self.signed_in(self.owner).get(revoke_url(self.owner_token.pk))
        self.assertEqual(answer.status_code, 405)

    def test_a_token_made_by_lt_login_is_listed_and_revocable_like_any_other(self) -> None:
        # Through the device flow's own code: approved by the owner, collected by lt's poll.
        row, device_code = device_codes.start("build-box", "1.4", "192.0.2.7")
        self.assertTrue(device_codes.decide(row, self.owner, approve=True))
        polled = device_codes.poll(device_code)
        self.assertEqual(polled.error, "")
        device = ApiToken.objects.get(user=self.owner, name=polled.name)
        self.assertEqual(device.name, "lt on build-box (lt 1.4)")
        client = self.signed_in(self.owner)
        self.assertContains(client.get(PAGE), "lt on build-box (lt 1.4)")
        self.assertNotContains(self.signed_in(self.other).get(PAGE), "lt on build-box")
        client.post(revoke_url(device.pk))
        device.refresh_from_db()
        self.assertTrue(device.revoked)


class CsrfTests(AccountTestCase):
    def test_every_post_needs_the_csrf_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.owner)
        for url, form in {
            TOKENS: {"name": "x", "expiry": "7"},
            revoke_url(self.owner_token.pk): {},
            NAMES: {"name": "fresh-name"},
            release_url(self.owner_name.pk): {},
        }.items():
            with self.subTest(url=url):
                self.assertEqual(client.post(url, form).status_code, 403)
        self.assertEqual(ApiToken.objects.filter(user=self.owner).count(), 1)
        self.assertFalse(ApiToken.objects.filter(revoked_at__isnull=False).exists())
        self.assertEqual(ReservedSubdomain.objects.filter(user=self.owner).count(), 1)


class NameTests(AccountTestCase):
    def setUp(self) -> None:
        self.plan = Plan.objects.create(name="team", max_reserved_names=2)
        Account.objects.create(user=self.owner, plan=self.plan)

    def reserve(self, name: str, user: User | None = None) -> object:
        return self.signed_in(user or self.owner).post(NAMES, {"name": name})

    def test_a_user_reserves_a_name_for_themselves(self) -> None:
        answer = self.reserve("  My-Blog ")
        self.assertRedirects(answer, PAGE, fetch_redirect_response=False)
        self.assertEqual(ReservedSubdomain.objects.get(name="my-blog").user, self.owner)

    def test_the_plans_limit_holds(self) -> None:
        self.reserve("second")
        answer = self.reserve("third")
        self.assertEqual(answer.status_code, 409)
        self.assertContains(
            answer, "Your plan (team) allows 2 reserved names, and you have 2.", status_code=409
        )
        self.assertFalse(ReservedSubdomain.objects.filter(name="third").exists())

    def test_without_a_plan_the_default_allows_one(self) -> None:
        answer = self.reserve("second", user=self.other)
        self.assertContains(
            answer, "Your plan (default) allows 1 reserved name, and you have 1.", status_code=409
        )

    @override_settings(RELAY_DEFAULT_PLAN_MAX_RESERVED_NAMES=0)
    def test_a_plan_with_none_says_to_ask_the_operator(self) -> None:
        answer = self.reserve("mine", user=make_user("newcomer"))
        self.assertContains(answer, "includes no reserved names", status_code=409)

    def test_each_kind_of_refused_name_says_why(self) -> None:
        TunnelSession.objects.create(
            subdomain="busy", owner=self.other, client_ip="192.0.2.1", port=1, max_sockets=10
        )
        Suspension.objects.create(kind=Suspension.NAME, name="badname", reason="phishing")
        for name, says in (
            ("-nope", "cannot be a tunnel name"),
            ("a" * 64, "cannot be a tunnel name"),
            ("ab-cd", "when the name has at least 6 characters"),  # the length rule, said
            ("account", "is kept by the relay"),
            ("admin", "is kept by the relay"),
            ("mail", "is kept by the relay"),
            ("other-name", "is reserved already"),
            ("owner-name", "You have reserved"),
            ("busy", "is in use by another tunnel now"),
            ("badname", "is suspended by the relay&#x27;s operator"),
        ):
            with self.subTest(name=name):
                answer = self.reserve(name)
                self.assertContains(answer, says, status_code=400)
        self.assertEqual(ReservedSubdomain.objects.filter(user=self.owner).count(), 1)

    def test_the_users_own_live_tunnel_name_may_be_reserved(self) -> None:
        TunnelSession.objects.create(
            subdomain="live-one", owner=self.owner, client_ip="192.0.2.1", port=1, max_sockets=10
        )
        self.assertEqual(self.reserve("live-one").status_code, 302)

    def test_the_owner_releases_their_name(self) -> None:
        answer = self.signed_in(self.owner).post(release_url(self.owner_name.pk))
        self.assertRedirects(answer, PAGE, fetch_redirect_response=False)
        self.assertFalse(ReservedSubdomain.objects.filter(name="owner-name").exists())

    def test_another_users_name_is_a_404_and_stays_theirs(self) -> None:
        answer = self.signed_in(self.owner).post(release_url(self.other_name.pk))
        self.assertEqual(answer.status_code, 404)
        self.assertTrue(ReservedSubdomain.objects.filter(name="other-name").exists())

    def test_an_operators_reservation_without_a_user_is_nobodys_to_release(self) -> None:
        kept = ReservedSubdomain.objects.create(name="kept")
        self.assertEqual(self.signed_in(self.owner).post(release_url(kept.pk)).status_code, 404)


class PlanAndUsageTests(AccountTestCase):
    def test_the_page_shows_the_plans_limits(self) -> None:
        plan = Plan.objects.create(
            name="pro",
            max_live_tunnels=3,
            max_requests_per_minute=600,
            max_bytes_per_day=10 * 1024**3,
            max_request_body_bytes=5 * 1024**2,
            idle_timeout_s=900,
            max_reserved_names=4,
            inspect_requests=False,
        )
        Account.objects.create(user=self.owner, plan=plan)
        page = self.signed_in(self.owner).get(PAGE)
        self.assertContains(page, "plan <strong>pro</strong>")
        for text in ("<dd>600</dd>", "<dd>10 GiB</dd>", "<dd>5.0 MiB</dd>", "<dd>900 s</dd>"):
            self.assertContains(page, text)
        self.assertContains(page, "1 of 4 your plan allows")
        self.assertContains(page, "off: nothing of your traffic is kept")

    def test_todays_usage_counts_the_users_sessions_closed_today_only(self) -> None:
        now = timezone.now()
        for owner, closed, requests in (
            (self.owner, now, 5),
            (self.owner, now, 7),
            (self.owner, now - datetime.timedelta(days=2), 1000),
            (self.other, now, 99),
        ):
            TunnelSession.objects.create(
                subdomain="s",
                owner=owner,
                client_ip="192.0.2.1",
                port=1,
                max_sockets=10,
                is_live=False,
                closed_at=closed,
                requests=requests,
                bytes_in=1024,
                bytes_out=1024,
            )
        context = self.signed_in(self.owner).get(PAGE).context
        self.assertEqual(context["usage"].requests_today, 12)
        self.assertEqual(context["usage"].bytes_today, 4096)
        self.assertEqual(context["usage"].reserved_names, 1)


@override_settings(RELAY_ALLOW_ANONYMOUS=True)
class LiveTunnelTests(AccountTestCase):
    async def test_each_user_sees_their_own_live_tunnels_with_rules_and_a_chart(self) -> None:
        async with fresh_registry() as registry:
            mine = await self.async_client.get(
                "/my-app",
                headers={**bearer(self.owner_secret), **access(basic_auth=["alice:pw", "bob:pw"])},
            )
            theirs = await self.async_client.get("/their-app", headers=bearer(self.other_secret))
            anonymous = await self.async_client.get("/anon-app")
            self.assertEqual(
                (mine.status_code, theirs.status_code, anonymous.status_code), (200, 200, 200)
            )
            registry.get("my-app").requests = 42
            await self.async_client.aforce_login(self.owner)
            owner_data = (await self.async_client.get(DATA)).json()
            await self.async_client.aforce_login(self.other)
            other_data = (await self.async_client.get(DATA)).json()
        self.assertEqual(owner_data["live"], ["my-app"])
        self.assertEqual(other_data["live"], ["their-app"])
        live = owner_data["html"]["live"]
        self.assertIn('href="http://my-app.localhost"', live)
        self.assertIn('href="/account/tunnels/my-app/"', live)
        self.assertIn("<dd>42</dd>", live)
        self.assertIn("<svg", live)
        self.assertIn('<span class="badge">password (2 users)</span>', live)
        self.assertNotIn("alice", live)
        self.assertNotIn("their-app", live)
        self.assertNotIn("anon-app", live)
