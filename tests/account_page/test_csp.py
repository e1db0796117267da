"""The Content-Security-Policy of the account pages (tunnels/csp.py): sent on each, and the
pages hold nothing it would block (no inline <style>, <script> or style="" attribute)."""

from __future__ import annotations

import re

from django.test import Client, TestCase, override_settings
from harness.accounts import make_user

from relay import protocol
from tunnels import csp

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
INLINE = re.compile(
    r"<style|\sstyle=|<script(?![^>]*\ssrc=)(?![^>]*type=\"application/json\")", re.IGNORECASE
)


class CspTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")

    def pages(self) -> dict[str, object]:
        signed_in = Client()
        signed_in.force_login(self.owner)
        anonymous = Client()
        return {
            "account": signed_in.get("/account/"),
            "token form refused": signed_in.post("/account/tokens", {"name": ""}),
            "inspector": signed_in.get("/account/tunnels/not-live-now/"),
            "device": signed_in.get(protocol.DEVICE_VERIFY_PATH),
            "device with a code": signed_in.get(protocol.DEVICE_VERIFY_PATH, {"code": "BCDF-GHJK"}),
            "sign-up (closed)": anonymous.get("/accounts/signup/"),
        }

    def test_the_sign_in_may_send_its_form_on_to_a_tunnels_host(self) -> None:
        # A team-only tunnel's visitor signs in and is redirected back to the tunnel: a
        # form's redirects are under form-action (Chromium blocked it with 'self' alone).
        for next_url in ("/account/", "/visit/?tunnel=my-app"):
            answer = Client().get("/accounts/login/", {"next": next_url})
            self.assertEqual(
                answer["Content-Security-Policy"],
                POLICY.replace("form-action 'self'", "form-action 'self' http://*.localhost"),
            )
            self.assertIsNone(INLINE.search(answer.content.decode()))

    def test_each_page_sends_the_policy(self) -> None:
        self.assertEqual(csp.POLICY, POLICY)
        for what, answer in self.pages().items():
            with self.subTest(page=what):
                self.assertEqual(answer["Content-Security-Policy"], POLICY)  # type: ignore[index]

    @override_settings(ACCOUNT_SIGNUP_OPEN=True)
    def test_no_page_holds_what_the_policy_blocks(self) -> None:
        pages = {**self.pages(), "sign-up": Client().get("/accounts/signup/")}
        for what, answer in pages.items():
            with self.subTest(page=what):
                html = answer.content.decode()  # type: ignore[attr-defined]
                self.assertEqual(answer["Content-Security-Policy"], POLICY)  # type: ignore[index]
                self.assertIsNone(INLINE.search(html), html[:2000])
