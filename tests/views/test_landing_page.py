"""The bare domain's landing page shows commands that work when pasted: the relay's public
scheme and port, as registration answers give them (a new user copied `http://<name>.domain`
without the port and reached nothing)."""

from __future__ import annotations

from django.test import TestCase, override_settings


@override_settings(ALLOWED_HOSTS=["tunnels.example"])
class LandingPageTests(TestCase):
    @override_settings(RELAY_DOMAIN="tunnels.example", RELAY_PUBLIC_SCHEME="http")
    def test_it_shows_the_port_visitors_use(self) -> None:
        page = self.client.get("/", headers={"host": "tunnels.example:8080"}, SERVER_PORT="8080")
        self.assertContains(page, "http://&lt;name&gt;.tunnels.example:8080")
        self.assertContains(page, "lt --port 3000 --host http://tunnels.example:8080")

    @override_settings(
        RELAY_DOMAIN="tunnels.example", RELAY_PUBLIC_SCHEME="https", RELAY_PUBLIC_PORT=443
    )
    def test_behind_tls_it_shows_https_and_no_port(self) -> None:
        page = self.client.get("/", headers={"host": "tunnels.example:8080"}, SERVER_PORT="8080")
        self.assertContains(page, "https://&lt;name&gt;.tunnels.example</code>")
        self.assertContains(page, "--host https://tunnels.example</pre>")
