"""The account page (issue 14) end to end in real headless Chromium, with a real relay
process, our lt and the local app:

- a user signs in from /account/, creates a token (its secret shown once: a reload does not
  show it), opens a tunnel with it from our lt and sees it appear without a reload, with
  the requests it carried; then revokes the token;
- the page at 1280 px in light and dark and at 390 px (a phone): screenshots to artifacts/
  (gitignored), every text's contrast AA, and the chart's colours against the card: 3:1 for
  the bars and the line, 4.5:1 for its labels; nothing wider than a phone's screen.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.browser import headless_chromium, wait_for
from harness.our_client import OurLt, OurLtLauncher
from harness.processes import ROOT, ProcessGroup
from harness.relay import LocalApp, Relay, manage
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from .conftest import start_relay
from .test_visitor_access_in_chromium import AA_LARGE, AA_NORMAL, SCHEMES, below_aa

ARTIFACTS = ROOT / "artifacts"
USER, PASSWORD = "dana", "a-long-password-for-the-account-page"
_USER = """
from django.contrib.auth.models import User
from tunnels.models import ApiToken
user = User.objects.create_user({user!r}, password={password!r})
print(ApiToken.issue(user, name="shots")[1])
"""
# The chart's marks and labels with their colour (fill or stroke) and the card behind them,
# as WCAG 2.x contrast ratios.
_CHART_JS = """
function rgb(text) { return text.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number); }
function lum(c) {
  const f = v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
}
function ratio(a, b) {
  const x = lum(rgb(a)), y = lum(rgb(b));
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}
const svg = document.querySelector(".traffic-chart");
const card = getComputedStyle(svg.closest(".card")).backgroundColor;
const out = {};
for (const [name, selector, property] of [
  ["bars in", "rect.in", "fill"], ["bars out", "rect.out", "fill"],
  ["requests line", "polyline.requests", "stroke"],
  ["bytes label", "text.bytes", "fill"], ["requests label", "text.requests", "fill"],
  ["axis label", "text.axis", "fill"],
]) {
  out[name] = ratio(getComputedStyle(svg.querySelector(selector))[property], card);
}
return out;
"""
# Elements whose right edge is past the window's (the page would scroll sideways).
_WIDER_JS = """
const edge = document.documentElement.clientWidth;
return [...document.body.querySelectorAll("*")]
  .filter(e => !e.closest(".table-wrap, figure.chart"))
  .filter(e => e.getBoundingClientRect().right > edge + 0.5)
  .map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right));
"""
CHART_MARKS = ("bars in", "bars out", "requests line")
_REVOKE_RIGHTS_JS = """
return [...document.querySelectorAll("#tokens button.button-danger")]
  .map(b => Math.round(b.getBoundingClientRect().right));
"""


def screenshot(browser: WebDriver, tmp_path: Path, name: str) -> Path:
    """The page as NAME.png in the test's tmp dir and in artifacts/ (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(path)), name
    (ARTIFACTS / f"account-page-{name}.png").write_bytes(path.read_bytes())
    return path


@pytest.fixture(scope="module")
def relay(
    relay_template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Relay, str]]:
    """A relay on `localhost` with the user dana and a token of theirs (for the shots)."""
    group = ProcessGroup()
    try:
        relay = start_relay(
            group, tmp_path_factory.mktemp("account-page"), relay_template_db, "localhost"
        )
        made = manage(relay, "shell", "-c", _USER.format(user=USER, password=PASSWORD))
        yield relay, made.strip().splitlines()[-1]
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def busy_tunnel(relay: tuple[Relay, str], local_app: LocalApp, launcher: OurLtLauncher) -> OurLt:
    """dana's tunnel with a few requests behind it, for the chart in the screenshots."""
    relay_, token = relay
    tunnel = launcher(relay_, local_app.port, "--token", token, "--subdomain", "dana-shots")
    for _ in range(5):
        assert relay_.get("/headers", name=tunnel.name).status == 200
    return tunnel


def sign_in(browser: WebDriver, relay: Relay) -> None:
    """From /account/ to the sign-in and back, as a user does."""
    browser.get(f"http://localhost:{relay.port}/account/")
    wait_for(browser, lambda b: b.find_elements(By.NAME, "username"), "the sign-in form")
    assert "/accounts/login/?next=/account/" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.XPATH, "//form[.//input[@name='password']]//button").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "live-title"), "the account page")


def live_requests(browser: WebDriver, name: str) -> int:
    cell = browser.find_element(By.XPATH, f"//li[@data-tunnel='{name}']//div[dt='Requests']/dd")
    return int(cell.text)


def test_a_user_signs_in_makes_a_token_sees_its_tunnel_live_and_revokes_it(
    relay: tuple[Relay, str],
    local_app: LocalApp,
    launcher: OurLtLauncher,
    tmp_path: Path,
) -> None:
    relay_, _ = relay
    with headless_chromium("--window-size=1280,1000") as browser:
        sign_in(browser, relay_)
        assert "No tunnels yet." in browser.find_element(By.ID, "live").text

        browser.find_element(By.ID, "id_token_name").send_keys("browser laptop")
        Select(browser.find_element(By.ID, "id_token_expiry")).select_by_visible_text("7 days")
        browser.find_element(By.XPATH, "//form[@id='token-form']//button").click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "new-token-secret"), "the new token")
        secret = browser.find_element(By.ID, "new-token-secret").text
        assert secret.startswith("lt_")
        command = browser.find_element(By.ID, "new-token-command").text
        assert command.endswith(" --token"), command
        assert secret not in command, "the secret stays off the command line"
        screenshot(browser, tmp_path, "new-token")

        browser.get(f"http://localhost:{relay_.port}/account/")
        wait_for(browser, lambda b: b.find_elements(By.ID, "live-title"), "the account page")
        assert secret not in browser.page_source, "the secret is shown once"
        assert "browser laptop" in browser.find_element(By.ID, "tokens").text

        browser.execute_script("window.notReloaded = true")
        tunnel = launcher(relay_, local_app.port, "--token", secret, "--subdomain", "dana-live")
        wait_for(
            browser,
            lambda b: b.find_elements(By.CSS_SELECTOR, "li[data-tunnel='dana-live']"),
            "the tunnel to appear",
        )
        for _ in range(3):
            assert relay_.get("/headers", name=tunnel.name).status == 200
        wait_for(browser, lambda b: live_requests(b, "dana-live") >= 3, "its requests")
        assert browser.execute_script("return window.notReloaded === true"), "no reload"
        link = browser.find_element(By.LINK_TEXT, "Inspect requests")
        assert link.get_attribute("href").endswith("/account/tunnels/dana-live/")

        row = "//tr[td='browser laptop']"
        browser.find_element(By.XPATH, f"{row}//button[text()='Revoke']").click()
        wait_for(
            browser,
            lambda b: "revoked" in b.find_element(By.XPATH, row).text,
            "the token shown revoked",
        )
        assert "Revoked the token browser laptop" in browser.find_element(By.TAG_NAME, "main").text
        # Its tunnel closed with it: lt's re-registration is refused (exit 3: the token).
        assert tunnel.process.wait(timeout=30) == 3
        wait_for(
            browser,
            lambda b: not b.find_elements(By.CSS_SELECTOR, "li[data-tunnel='dana-live']"),
            "the tunnel to leave the live list",
        )


@pytest.mark.parametrize(
    ("look", "scheme", "width"),
    [("light", "light", 1280), ("dark", "dark", 1280), ("phone", "light", 390)],
)
def test_the_page_reads_in_light_dark_and_at_phone_width(
    relay: tuple[Relay, str],
    busy_tunnel: OurLt,
    look: str,
    scheme: str,
    width: int,
    tmp_path: Path,
) -> None:
    relay_, _ = relay
    flags = (
        f"--window-size={width},1000",
        f"--blink-settings=preferredColorScheme={SCHEMES[scheme]}",
    )
    with headless_chromium(*flags) as browser:
        if width < 500:  # a desktop window cannot be that narrow: a phone's screen instead
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 844, "deviceScaleFactor": 2, "mobile": False},
            )
        sign_in(browser, relay_)
        assert browser.execute_script("return innerWidth") == width
        dark = browser.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches")
        assert dark == (scheme == "dark")
        wait_for(
            browser, lambda b: live_requests(b, busy_tunnel.name) >= 5, "the tunnel's requests"
        )
        wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".traffic-chart"), "the chart")
        screenshot(browser, tmp_path, look)
        assert below_aa(browser) == []
        contrast = browser.execute_script(_CHART_JS)
        low = {
            part: round(ratio, 2)
            for part, ratio in contrast.items()
            if ratio < (AA_LARGE if part in CHART_MARKS else AA_NORMAL)
        }
        assert low == {}, contrast
        wider = browser.execute_script(_WIDER_JS)
        assert wider == [], "elements reach past the right edge of the window"
        sideways = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert sideways <= 0, f"the page scrolls {sideways} px sideways"
        # Inside the cards too (the check above skips .table-wrap, which may scroll): each
        # token's Revoke is on screen, without scrolling its table.
        revokes = browser.execute_script(_REVOKE_RIGHTS_JS)
        assert revokes and all(right <= width for right in revokes), revokes


def test_the_measure_finds_a_chart_colour_too_faint(
    relay: tuple[Relay, str], busy_tunnel: OurLt
) -> None:
    """The chart check can fail: bars the colour of the card are found."""
    relay_, _ = relay
    with headless_chromium("--window-size=1280,1000") as browser:
        sign_in(browser, relay_)
        wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".traffic-chart"), "the chart")
        browser.execute_script(
            "document.documentElement.style.setProperty('--chart-in', '#f4f4f4');"
            "document.querySelector('#live').removeAttribute('data-fragment');"
        )
        assert browser.execute_script(_CHART_JS)["bars in"] < AA_LARGE


# Counts the page's calls to account/data from now on, and makes the tab hidden or visible
# as the browser would (headless Chromium has no other tab to switch to).
_COUNT_FETCHES_JS = """
window.dataCalls = 0;
const real = window.fetch;
window.fetch = function (...args) { window.dataCalls += 1; return real.apply(this, args); };
"""
_SET_HIDDEN_JS = """
const hidden = arguments[0];
Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
Object.defineProperty(document, "visibilityState", {
  configurable: true, get: () => (hidden ? "hidden" : "visible"),
});
document.dispatchEvent(new Event("visibilitychange"));
"""
# Waits in the browser for `ms` (an observation window: nothing should happen in it).
_WAIT_JS = "const done = arguments[arguments.length - 1]; setTimeout(done, arguments[0]);"


def test_the_page_stops_asking_while_its_tab_is_hidden(relay: tuple[Relay, str]) -> None:
    relay_, _ = relay
    with headless_chromium("--window-size=1280,1000") as browser:
        sign_in(browser, relay_)
        status = browser.find_element(By.ID, "live-status")
        wait_for(browser, lambda b: int(status.get_attribute("data-updates") or 0) >= 1, "a poll")
        poll_ms = int(
            browser.execute_script("return document.querySelector('[data-poll-ms]').dataset.pollMs")
        )
        browser.execute_script(_COUNT_FETCHES_JS)
        browser.execute_script(_SET_HIDDEN_JS, True)
        browser.set_script_timeout(poll_ms * 5 / 1000 + 10)
        browser.execute_async_script(_WAIT_JS, poll_ms * 3)
        assert browser.execute_script("return window.dataCalls") == 0, "polled while hidden"
        before = int(status.get_attribute("data-updates") or 0)
        browser.execute_script(_SET_HIDDEN_JS, False)
        wait_for(
            browser,
            lambda b: int(status.get_attribute("data-updates") or 0) > before,
            "a poll as soon as the tab shows again",
        )
