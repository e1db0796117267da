"""`lt login` in the browser (RFC 8628; tunnels/device.py, tunnels/device_codes.py): the two
API calls lt makes and the page a signed-in user approves on, with the owner (who approves),
another user and anonymous visitors; every error path, the limits, and what is stored."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.test import Client, TestCase
from django.utils import timezone
from harness.accounts import make_user

from relay import protocol
from tunnels import device_codes, suspensions, tokens
from tunnels.models import ApiToken, DeviceAuthorization

CODE_URL = protocol.DEVICE_CODE_PATH
TOKEN_URL = protocol.DEVICE_TOKEN_PATH
VERIFY_URL = protocol.DEVICE_VERIFY_PATH
LT_ADDRESS = "192.0.2.7"


class DeviceFlowCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.other = make_user("other")

    def setUp(self) -> None:
        cache.clear()
        self.lt = Client(REMOTE_ADDR=LT_ADDRESS, enforce_csrf_checks=True)

    def ask(self, **fields: Any) -> dict[str, Any]:
        fields = {"client_name": "laptop", "client_version": "0.1.0", **fields}
        answer = self.lt.post(CODE_URL, json.dumps(fields), content_type="application/json")
        self.assertEqual(answer.status_code, 200, answer.content)
        return answer.json()

    def poll(self, device_code: str, **extra: str) -> Any:
        body = {"device_code": device_code, "grant_type": protocol.DEVICE_GRANT_TYPE, **extra}
        return self.lt.post(TOKEN_URL, json.dumps(body), content_type="application/json")

    def poll_later(self, device_code: str) -> Any:
        """A poll that comes on time: the last one is moved back by the interval."""
        row = DeviceAuthorization.objects.get(device_digest=digest(device_code))
        if row.last_poll is not None:
            row.last_poll -= timedelta(seconds=row.interval_s)
            row.save(update_fields=["last_poll"])
        return self.poll(device_code)

    def browser(self, user: Any = None, address: str = "198.51.100.9") -> Client:
        client = Client(REMOTE_ADDR=address)
        if user is not None:
            client.force_login(user)
        return client

    def approve(self, client: Client, user_code: str, decision: str = "approve") -> Any:
        return client.post(VERIFY_URL, {"code": user_code, "decision": decision})

    def type_code(self, client: Client, typed: str) -> Any:
        """The code typed in the page's form (posted, without a decision yet)."""
        return client.post(VERIFY_URL, {"code": typed})


def digest(device_code: str) -> str:
    return hashlib.sha256(device_code.encode()).hexdigest()


class CodeTests(DeviceFlowCase):
    def test_it_answers_the_documented_json_with_an_absolute_verification_uri(self) -> None:
        got = self.ask()
        port = int(settings.RELAY_PUBLIC_PORT or 80)
        verify = (
            protocol.relay_url(settings.RELAY_PUBLIC_SCHEME, settings.RELAY_DOMAIN, port)
            + VERIFY_URL
        )
        self.assertEqual(
            set(got),
            {
                "device_code",
                "user_code",
                "verification_uri",
                "verification_uri_complete",
                "expires_in",
                "interval",
            },
        )
        self.assertEqual(got["verification_uri"], verify)
        self.assertEqual(got["verification_uri_complete"], f"{verify}?code={got['user_code']}")
        self.assertEqual(got["expires_in"], settings.DEVICE_CODE_TTL_S)
        self.assertEqual(got["interval"], settings.DEVICE_POLL_INTERVAL_S)
        self.assertRegex(got["user_code"], r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
        self.assertGreaterEqual(len(got["device_code"]), 43)  # 32 bytes, url-safe base64

    def test_the_device_code_is_stored_only_as_its_digest(self) -> None:
        got = self.ask()
        row = DeviceAuthorization.objects.get()
        self.assertEqual(row.device_digest, digest(got["device_code"]))
        stored = json.dumps(list(DeviceAuthorization.objects.values()), default=str)
        self.assertNotIn(got["device_code"], stored)
        self.assertEqual(row.user_code, got["user_code"].replace("-", ""))
        self.assertEqual((row.device_name, row.client_version), ("laptop", "0.1.0"))
        self.assertEqual(row.client_ip, LT_ADDRESS)

    def test_a_form_works_like_json_and_long_names_are_cut(self) -> None:
        answer = self.lt.post(CODE_URL, {"client_name": "h" * 500, "client_version": "v" * 99})
        self.assertEqual(answer.status_code, 200)
        row = DeviceAuthorization.objects.get()
        self.assertEqual(len(row.device_name), protocol.DEVICE_NAME_MAX_CHARS)
        self.assertEqual(len(row.client_version), protocol.DEVICE_VERSION_MAX_CHARS)

    def test_nothing_named_is_fine(self) -> None:
        answer = self.lt.post(CODE_URL)
        self.assertEqual(answer.status_code, 200, answer.content)
        self.assertEqual(DeviceAuthorization.objects.get().device_name, "")

    def test_bad_bodies_and_methods_get_a_json_message(self) -> None:
        for answer, status in [
            (self.lt.get(CODE_URL), 405),
            (self.lt.post(CODE_URL, "{not json", content_type="application/json"), 400),
            (self.lt.post(CODE_URL, "[1, 2]", content_type="application/json"), 400),
            (self.lt.post(CODE_URL, b"\x00", content_type="application/octet-stream"), 400),
        ]:
            with self.subTest(status=status):
                self.assertEqual(answer.status_code, status)
                self.assertIn("message", answer.json())
        self.assertFalse(DeviceAuthorization.objects.exists())

    def test_deeply_nested_json_is_a_json_400_on_both_of_lts_calls(self) -> None:
        # json.loads raises RecursionError (not ValueError) past ~1000 levels: it was a 500.
        for url in (CODE_URL, TOKEN_URL):
            for depth in (2000, 100_000):  # within the size bound, and past it
                with self.subTest(url=url, depth=depth):
                    answer = self.lt.post(url, "[" * depth, content_type="application/json")
                    self.assertEqual(answer.status_code, 400)
                    self.assertIn("message", answer.json())
        self.assertFalse(DeviceAuthorization.objects.exists())

    def test_control_and_bidi_characters_are_taken_out_of_the_device_name(self) -> None:
        self.ask(client_name="evil\u202eelpmaxe\nApproved", client_version="1.0\u2067\x85")
        row = DeviceAuthorization.objects.get()
        self.assertEqual((row.device_name, row.client_version), ("evilelpmaxeApproved", "1.0"))
        self.assertEqual(device_codes.token_name(row), "lt on evilelpmaxeApproved (lt 1.0)")
        page = self.browser(self.owner).get(VERIFY_URL, {"code": self.ask()["user_code"]})
        self.assertContains(page, '<dd id="device-name"><bdi>laptop</bdi></dd>', html=False)

    def test_codes_are_limited_per_address_with_retry_after(self) -> None:
        for _ in range(device_codes.CODE_REQUESTS.limit):
            self.ask()
        refused = self.lt.post(CODE_URL)
        self.assertEqual(refused.status_code, 429)
        self.assertIn("Too many device codes", refused.json()["message"])
        self.assertGreater(int(refused["Retry-After"]), 0)
        elsewhere = Client(REMOTE_ADDR="203.0.113.5").post(CODE_URL)
        self.assertEqual(elsewhere.status_code, 200, "another address has its own budget")

    def test_long_expired_rows_are_deleted_in_passing(self) -> None:
        self.ask()
        old = timezone.now() - device_codes.KEEP_EXPIRED - timedelta(minutes=1)
        DeviceAuthorization.objects.update(expires=old)
        self.ask()
        self.assertEqual(DeviceAuthorization.objects.count(), 1)
        self.assertGreater(DeviceAuthorization.objects.get().expires, timezone.now())

    def test_user_codes_are_unique_among_pending_rows(self) -> None:
        codes = {self.ask()["user_code"] for _ in range(device_codes.CODE_REQUESTS.limit)}
        self.assertEqual(len(codes), device_codes.CODE_REQUESTS.limit)


class TokenTests(DeviceFlowCase):
    def test_before_approval_it_is_pending_with_error_and_message(self) -> None:
        answer = self.poll(self.ask()["device_code"])
        self.assertEqual(answer.status_code, 400)
        self.assertEqual(answer.json()["error"], protocol.DEVICE_PENDING)
        self.assertTrue(answer.json()["message"])
        self.assertEqual(answer["Cache-Control"], "no-store")

    def test_waiting_polls_are_not_logged_but_bad_ones_are(self) -> None:
        code = self.ask()["device_code"]
        with self.assertNoLogs("django.request", "WARNING"):
            self.assertEqual(self.poll(code).json()["error"], protocol.DEVICE_PENDING)
        with self.assertLogs("django.request", "WARNING"):
            self.assertEqual(self.poll("unknown").json()["error"], "invalid_grant")

    def test_polling_faster_than_the_interval_slows_lt_down(self) -> None:
        code = self.ask()["device_code"]
        self.assertEqual(self.poll(code).json()["error"], protocol.DEVICE_PENDING)
        fast = self.poll(code)
        self.assertEqual(fast.json()["error"], protocol.DEVICE_SLOW_DOWN)
        grown = settings.DEVICE_POLL_INTERVAL_S + protocol.DEVICE_SLOW_DOWN_STEP_S
        self.assertEqual(fast.json()["interval"], grown)
        self.assertEqual(DeviceAuthorization.objects.get().interval_s, grown)
        self.assertEqual(self.poll_later(code).json()["error"], protocol.DEVICE_PENDING)

    def test_the_rfcs_request_errors(self) -> None:
        code = self.ask()["device_code"]
        cases = [
            (self.poll(code, grant_type="password"), "unsupported_grant_type"),
            (self.poll(""), "invalid_request"),
            (self.poll("not-a-code-we-made"), "invalid_grant"),
            (self.lt.post(TOKEN_URL, "{", content_type="application/json"), "invalid_request"),
        ]
        for answer, error in cases:
            with self.subTest(error=error):
                self.assertEqual(answer.status_code, 400)
                self.assertEqual(answer.json()["error"], error)
                self.assertTrue(answer.json()["message"])
        self.assertEqual(self.lt.get(TOKEN_URL).status_code, 405)

    def test_an_expired_code_says_expired_token(self) -> None:
        got = self.ask()
        DeviceAuthorization.objects.update(expires=timezone.now() - timedelta(seconds=1))
        answer = self.poll(got["device_code"])
        self.assertEqual(answer.json()["error"], protocol.DEVICE_EXPIRED)
        page = self.approve(self.browser(self.owner), got["user_code"])
        self.assertEqual(page.status_code, 410)
        self.assertContains(page, "expired", status_code=410)
        self.assertFalse(ApiToken.objects.exists())


class ApprovalTests(DeviceFlowCase):
    def test_the_approvers_token_is_handed_out_once(self) -> None:
        got = self.ask()
        owner = self.browser(self.owner)
        page = owner.get(VERIFY_URL, {"code": got["user_code"]})
        self.assertContains(page, "laptop")
        self.assertContains(page, "0.1.0")
        self.assertContains(page, LT_ADDRESS)
        done = self.approve(owner, got["user_code"])
        self.assertContains(done, "You can close this tab; lt is signed in.")
        answer = self.poll(got["device_code"])
        self.assertEqual(answer.status_code, 200, answer.content)
        body = answer.json()
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["name"], "lt on laptop (lt 0.1.0)")
        token = ApiToken.objects.get()
        self.assertEqual(token.user, self.owner)
        self.assertEqual(token.name, body["name"])
        self.assertIsNone(token.expires)
        prefix, secret = tokens.split(body["access_token"]) or ("", "")
        self.assertEqual(prefix, token.prefix)
        self.assertTrue(tokens.matches(secret, token.digest))
        row = DeviceAuthorization.objects.get()
        self.assertEqual((row.state, row.token, row.user), ("done", token, self.owner))
        again = self.poll_later(got["device_code"])
        self.assertEqual(again.status_code, 400)
        self.assertEqual(again.json()["error"], "invalid_grant")
        self.assertEqual(ApiToken.objects.count(), 1, "one token per approval")

    def test_whoever_types_the_code_approves_it_for_themselves(self) -> None:
        got = self.ask()
        self.approve(self.browser(self.other), got["user_code"])
        self.poll(got["device_code"])
        self.assertEqual(ApiToken.objects.get().user, self.other)
        self.assertFalse(self.owner.api_tokens.exists())

    def test_a_used_code_shows_no_device_to_another_user(self) -> None:
        got = self.ask()
        self.approve(self.browser(self.owner), got["user_code"])
        page = self.browser(self.other).get(VERIFY_URL, {"code": got["user_code"]})
        self.assertContains(page, "used already", status_code=410)
        self.assertNotContains(page, LT_ADDRESS, status_code=410)
        twice = self.approve(self.browser(self.other), got["user_code"])
        self.assertEqual(twice.status_code, 410)
        self.assertEqual(DeviceAuthorization.objects.get().user, self.owner)

    def test_codes_are_read_in_any_case_and_without_the_dash(self) -> None:
        got = self.ask()
        typed = got["user_code"].replace("-", " ").lower()
        page = self.browser(self.owner).get(VERIFY_URL, {"code": typed})
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, got["user_code"])
        self.assertContains(page, 'id="approve"')
        # The code stays off other sites' Referer; the form's own Origin is still sent
        # (Chromium sends `Origin: null` under no-referrer, and CSRF refuses that).
        self.assertEqual(page["Referrer-Policy"], "same-origin")
        self.assertEqual(page["Cache-Control"].split(",")[0], "no-store")

    def test_deny_is_access_denied_and_makes_no_token(self) -> None:
        got = self.ask()
        page = self.approve(self.browser(self.owner), got["user_code"], "deny")
        self.assertContains(page, "was not signed in")
        answer = self.poll(got["device_code"])
        self.assertEqual(answer.json()["error"], protocol.DEVICE_DENIED)
        self.assertFalse(ApiToken.objects.exists())

    def test_anonymous_visitors_are_sent_to_sign_in_with_the_code_kept(self) -> None:
        got = self.ask()
        answer = self.browser().get(VERIFY_URL, {"code": got["user_code"]})
        self.assertEqual(answer.status_code, 302)
        self.assertTrue(answer["Location"].startswith(settings.LOGIN_URL))
        self.assertIn("code%3D" + got["user_code"], answer["Location"])
        posted = self.approve(self.browser(), got["user_code"])
        self.assertEqual(posted.status_code, 302)
        self.assertEqual(DeviceAuthorization.objects.get().state, "pending")

    def test_a_decision_needs_the_csrf_token(self) -> None:
        got = self.ask()
        browser = Client(REMOTE_ADDR="198.51.100.9", enforce_csrf_checks=True)
        browser.force_login(self.owner)
        refused = self.approve(browser, got["user_code"])
        self.assertEqual(refused.status_code, 403)
        self.assertEqual(DeviceAuthorization.objects.get().state, "pending")
        page = browser.get(VERIFY_URL, {"code": got["user_code"]})
        csrf = page.cookies[settings.CSRF_COOKIE_NAME].value
        browser.post(
            VERIFY_URL,
            {"code": got["user_code"], "decision": "approve", "csrfmiddlewaretoken": csrf},
        )
        self.assertEqual(DeviceAuthorization.objects.get().state, "approved")

    def test_lts_calls_need_no_csrf_token(self) -> None:
        # self.lt enforces CSRF checks, as a browser's would be: lt is not a browser.
        got = self.ask()
        self.assertEqual(self.poll(got["device_code"]).status_code, 400)

    def test_a_suspended_user_cannot_approve(self) -> None:
        suspensions.suspend_users([self.owner], "abuse")
        got = self.ask()
        page = self.approve(self.browser(self.owner), got["user_code"])
        self.assertContains(page, "suspended", status_code=403)
        self.assertEqual(DeviceAuthorization.objects.get().state, "pending")

    def test_a_user_suspended_after_approving_gets_no_token(self) -> None:
        got = self.ask()
        self.approve(self.browser(self.owner), got["user_code"])
        suspensions.suspend_users([self.owner], "abuse")
        answer = self.poll(got["device_code"])
        self.assertEqual(answer.json()["error"], protocol.DEVICE_DENIED)
        self.assertFalse(ApiToken.objects.exists())

    def test_a_bad_decision_is_a_message(self) -> None:
        got = self.ask()
        page = self.approve(self.browser(self.owner), got["user_code"], "maybe")
        self.assertContains(page, "Approve or Deny", status_code=400)
        self.assertEqual(DeviceAuthorization.objects.get().state, "pending")


class WrongCodeTests(DeviceFlowCase):
    def test_a_wrong_code_says_what_to_do(self) -> None:
        self.ask()
        for typed in ("BCDF-GHJK", "nonsense", "A" * 9000):
            with self.subTest(typed=typed[:20]):
                for page in (
                    self.browser(self.owner).get(VERIFY_URL, {"code": typed}),
                    self.type_code(self.browser(self.owner), typed),
                ):
                    self.assertContains(page, "not one the relay is waiting for", status_code=404)

    def test_a_typed_code_shows_the_device_to_approve(self) -> None:
        got = self.ask()
        page = self.type_code(self.browser(self.owner), got["user_code"].lower())
        self.assertContains(page, 'id="approve"')
        self.assertContains(page, got["user_code"])
        self.assertEqual(DeviceAuthorization.objects.get().state, "pending")

    def test_the_empty_form_asks_for_the_code_and_posts_it(self) -> None:
        page = self.browser(self.owner).get(VERIFY_URL)
        self.assertContains(page, 'name="code"')
        self.assertContains(page, 'method="post"')
        self.assertContains(page, "csrfmiddlewaretoken")
        self.assertNotContains(page, 'id="problem"')

    def test_wrong_codes_in_links_lock_no_one_out(self) -> None:
        # Any page (a tunnel is same-site) can embed <img src="/account/device/?code=BBBB-BBBB">
        # many times over in a signed-in user's browser: those GETs are not counted.
        got = self.ask()
        victim = self.browser(self.owner)
        for _ in range(device_codes.WRONG_CODES.limit * 2):
            self.assertEqual(victim.get(VERIFY_URL, {"code": "BBBB-BBBB"}).status_code, 404)
        self.assertEqual(victim.get(VERIFY_URL, {"code": got["user_code"]}).status_code, 200)
        self.assertContains(self.type_code(victim, got["user_code"]), 'id="approve"')
        self.assertContains(self.approve(victim, got["user_code"]), "signed in")
        self.assertEqual(DeviceAuthorization.objects.get().state, "approved")

    def test_links_past_their_limit_only_fill_the_form_in(self) -> None:
        # Uncounted GETs would be a free oracle for guessing: past WRONG_LINKS a link looks
        # nothing up (a pending code is not shown), and typing it still works.
        got = self.ask()
        guesser = self.browser(self.owner)
        for _ in range(device_codes.WRONG_LINKS.limit):
            self.assertEqual(guesser.get(VERIFY_URL, {"code": "BBBB-BBBB"}).status_code, 404)
        page = guesser.get(VERIFY_URL, {"code": got["user_code"]})
        self.assertContains(page, "press Continue")
        self.assertNotContains(page, 'id="approve"')
        self.assertContains(self.type_code(guesser, got["user_code"]), 'id="approve"')

    def test_wrong_guesses_are_limited_per_user(self) -> None:
        got = self.ask()
        guesser = self.browser(self.owner, "198.51.100.1")
        for i in range(device_codes.WRONG_CODES.limit):
            address_client = self.browser(self.owner, f"198.51.100.{i + 10}")
            self.assertEqual(self.type_code(address_client, "BBBB-BBBB").status_code, 404)
        limited = guesser.get(VERIFY_URL, {"code": got["user_code"]})
        self.assertEqual(limited.status_code, 429)
        self.assertGreater(int(limited["Retry-After"]), 0)
        self.assertEqual(self.type_code(guesser, got["user_code"]).status_code, 429)
        self.assertEqual(self.approve(guesser, got["user_code"]).status_code, 429)
        self.assertEqual(DeviceAuthorization.objects.get().state, "pending")
        other = self.browser(self.other, "203.0.113.50").get(VERIFY_URL, {"code": got["user_code"]})
        self.assertEqual(other.status_code, 200, "another user elsewhere is not limited")

    def test_one_users_wrong_codes_do_not_lock_out_their_colleagues_behind_one_nat(self) -> None:
        got = self.ask()
        typist = self.browser(self.owner, "198.51.100.77")
        for _ in range(device_codes.WRONG_CODES.limit):
            self.assertEqual(self.type_code(typist, "BBBB-BBBB").status_code, 404)
        self.assertEqual(typist.get(VERIFY_URL, {"code": got["user_code"]}).status_code, 429)
        colleague = self.browser(self.other, "198.51.100.77")
        self.assertEqual(colleague.get(VERIFY_URL, {"code": got["user_code"]}).status_code, 200)

    def test_wrong_guesses_are_limited_per_address(self) -> None:
        got = self.ask()
        rule = device_codes.WRONG_CODES_PER_ADDRESS
        self.assertGreater(rule.limit, device_codes.WRONG_CODES.limit)
        users = [make_user(f"guesser{i}") for i in range(rule.limit // 10)]
        for i in range(rule.limit):
            page = self.type_code(self.browser(users[i // 10], "198.51.100.77"), "BBBB-BBBB")
            self.assertEqual(page.status_code, 404)
        same_address = self.browser(self.other, "198.51.100.77")
        self.assertEqual(same_address.get(VERIFY_URL, {"code": got["user_code"]}).status_code, 429)

    def test_the_right_code_spends_nothing(self) -> None:
        got = self.ask()
        owner = self.browser(self.owner)
        for _ in range(device_codes.WRONG_CODES.limit + 1):
            self.assertEqual(self.type_code(owner, got["user_code"]).status_code, 200)


class CodeUnitTests(TestCase):
    def test_normalise_reads_typed_codes(self) -> None:
        self.assertEqual(device_codes.normalise(" bcdf-ghjk "), "BCDFGHJK")
        self.assertIsNone(device_codes.normalise("BCDF-GHJA"))  # a vowel: not in the alphabet
        self.assertIsNone(device_codes.normalise("BCDF-GHJ"))
        self.assertEqual(device_codes.shown("BCDFGHJK"), "BCDF-GHJK")

    def test_token_names_fit_and_keep_the_version(self) -> None:
        row = DeviceAuthorization(device_name="x" * 100, client_version="1" * 40)
        name = device_codes.token_name(row)
        self.assertLessEqual(len(name), ApiToken._meta.get_field("name").max_length or 0)
        self.assertTrue(name.endswith(f"(lt {'1' * 40})"))
        self.assertEqual(
            device_codes.token_name(DeviceAuthorization(device_name="", client_version="")),
            "lt on a device",
        )
