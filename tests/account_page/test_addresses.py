"""tunnels.addresses: every page that prints the relay's or a tunnel's address prints the same
one, from RELAY_PUBLIC_SCHEME, RELAY_DOMAIN and RELAY_PUBLIC_PORT (a proxy in front)."""

from __future__ import annotations

import json

from django.test import TestCase, override_settings
from harness.accounts import make_user

from relay import protocol

BEHIND = "https://localhost:8443"  # what a proxy in front would publish


@override_settings(RELAY_PUBLIC_SCHEME="https", RELAY_PUBLIC_PORT=8443)
class PublicAddressTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.user = make_user("addressed")

    def test_the_new_tokens_command_names_the_public_relay(self) -> None:
        self.client.force_login(self.user)
        nonce = self.client.get("/account/").context["token_nonce"]
        answer = self.client.post("/account/tokens", {"name": "x", "expiry": "7", "nonce": nonce})
        self.assertEqual(answer.context["login_command"], f"lt login --host {BEHIND} --token")
        self.assertEqual(answer.context["relay_url"], BEHIND)

    def test_the_device_flow_sends_lt_to_the_public_relay(self) -> None:
        answer = self.client.post(
            protocol.DEVICE_CODE_PATH, json.dumps({}), content_type="application/json"
        )
        self.assertEqual(answer.json()["verification_uri"], BEHIND + protocol.DEVICE_VERIFY_PATH)

    def test_the_landing_page_shows_the_public_addresses(self) -> None:
        answer = self.client.get("/")
        self.assertEqual(answer.context["relay_url"], BEHIND)
        self.assertEqual(answer.context["tunnel_url"], "https://<name>.localhost:8443")
