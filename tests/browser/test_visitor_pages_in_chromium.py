"""The bare domain's visitor pages in real headless Chromium, against a real relay and our lt:
a team-only tunnel's sign-in as far as the site takes it (sent to sign in, back to /visit/,
refused as another user, switching accounts), and an abuse report reaching the admin.

The whole flow through the tunnel's host (the ticket, the page behind it, sign out and out) is
in test_visitor_access_in_chromium.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from harness.browser import wait_for
from harness.our_client import OurLt, OurLtLauncher
from harness.processes import ProcessGroup
from harness.relay import LocalApp, Relay
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .conftest import sign_in_as


@pytest.fixture(scope="module")
def owners_tunnel(
    team: tuple[Relay, str], local_app: LocalApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OurLt]:
    relay, token = team
    group = ProcessGroup()
    try:
        launcher = OurLtLauncher(group, tmp_path_factory.mktemp("lt-config"))
        yield launcher(relay, local_app.port, "--token", token, "--subdomain", "team-app")
    finally:
        group.stop_all()


def test_a_visitor_is_sent_to_sign_in_refused_as_an_outsider_and_may_switch_accounts(
    team: tuple[Relay, str], owners_tunnel: OurLt, visitor: WebDriver
) -> None:
    relay, _ = team
    base = f"http://localhost:{relay.port}"
    visitor.get(f"{base}/visit/?" + urlencode({"tunnel": owners_tunnel.name, "next": "/x?y=1"}))
    wait_for(visitor, lambda b: urlsplit(b.current_url).path == "/accounts/login/", "sign-in")
    sign_in_as(visitor, "other")
    wait_for(visitor, lambda b: "Not on this tunnel" in b.page_source, "the refusal page")
    assert urlsplit(visitor.current_url).path == "/visit/"
    assert "signed in as other" in visitor.find_element(By.TAG_NAME, "body").text
    # The switch button signs out (face.signout_message, the relay's part) and comes back
    # through the sign-in to this tunnel: tests/accounts/test_visitor_pages.py follows it.
    switch = visitor.find_element(By.CSS_SELECTOR, "form[action='/accounts/logout/']")
    back = switch.find_element(By.NAME, "next").get_attribute("value") or ""
    assert urlsplit(back).path == "/accounts/login/"
    again = urlsplit(parse_qs(urlsplit(back).query)["next"][0])
    assert again.path == "/visit/"
    assert parse_qs(again.query) == {"tunnel": [owners_tunnel.name], "next": ["/x?y=1"]}


def test_a_report_from_the_form_appears_in_the_admin_with_the_tunnels_owner(
    team: tuple[Relay, str],
    owners_tunnel: OurLt,
    visitor: WebDriver,
    sign_in: Callable[[Relay], WebDriver],
) -> None:
    relay, _ = team
    page = f"http://{owners_tunnel.name}.localhost:{relay.port}/login"
    query = urlencode({"tunnel": owners_tunnel.name, "url": page})
    visitor.get(f"http://localhost:{relay.port}/report/?{query}")
    wait_for(visitor, lambda b: b.find_elements(By.NAME, "note"), "the report form")
    assert page in visitor.find_element(By.TAG_NAME, "body").text
    visitor.find_element(By.NAME, "note").send_keys("a fake bank sign-in page")
    visitor.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(visitor, lambda b: "Thank you" in b.page_source, "the thank-you page")

    admin = sign_in(relay)
    admin.get(f"http://localhost:{relay.port}/admin/tunnels/abusereport/")
    wait_for(admin, lambda b: "a fake bank sign-in page" in b.page_source, "the report")
    row = admin.find_element(By.CSS_SELECTOR, "#result_list tbody tr").text
    for text in (owners_tunnel.name, page, "owner", "127.0.0.1"):
        assert text in row, (text, row)
