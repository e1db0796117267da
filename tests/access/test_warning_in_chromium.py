"""The warning page in real headless Chromium: an anonymous tunnel's first visit shows it,
Continue leads to the page asked for, a reload stays there, and a second tunnel still warns."""

from __future__ import annotations

import pytest
from harness.browser import headless_chromium, through_warning, wait_for
from harness.relay import NO_LIVE_TUNNEL_CAP
from harness.waiting import unique_name
from selenium.webdriver.common.by import By

FIRST, SECOND = unique_name("warn"), unique_name("warn")


@pytest.fixture(scope="module")
def relay(module_relay_factory):
    """On the defaults (RELAY_INTERSTITIAL=anonymous): the npm client's anonymous tunnels warn."""
    return module_relay_factory(**NO_LIVE_TUNNEL_CAP)


def test_continue_leads_to_the_app_and_the_next_visit_goes_straight_there(
    relay, local_app, module_lt_factory
):
    for name in (FIRST, SECOND):
        module_lt_factory(relay, local_app.port, name)
    with headless_chromium() as browser:
        browser.get(f"http://{FIRST}.localhost:{relay.port}/headers?from=chromium")
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "an anonymous user" in text and "not a site of the operator" in text
        report = browser.find_element(By.ID, "report").get_attribute("href")
        assert report.startswith(f"http://localhost:{relay.port}/report/?tunnel={FIRST}&url=")

        assert through_warning(browser)
        wait_for(browser, lambda b: '"target"' in b.page_source, "the app's echo")
        assert '"/headers?from=chromium"' in browser.page_source
        assert "tunnelsite_warned" not in browser.page_source  # the app never sees it

        browser.refresh()
        assert '"target"' in browser.page_source and not through_warning(browser)

        browser.get(f"http://{SECOND}.localhost:{relay.port}/hello")
        assert browser.find_elements(By.ID, "continue"), "another tunnel warns on its own"
