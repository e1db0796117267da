"""Issue 13's visitor pages end to end in real headless Chromium, with a real relay process,
our lt and the local app (its /headers echoes the Cookie header it got):

- a team-only (`--private`) tunnel: sent to the bare domain's sign-in, signed in as a
  teammate, back on the exact page, a reload still in, the relay's cookie never at the app,
  signed out on the bare domain and sent to sign in again; another user refused;
- an anonymous tunnel's warning page: Continue, a reload, "Report abuse" to the admin's list;
- a tunnel name suspended from the admin's action with a reason: the visitor's 403 page;
- the warning and sign-in pages in light and dark, their text contrast AA (WCAG 2.x).

Screenshots go to the test's tmp dir and to artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from harness.browser import headless_chromium, through_warning, wait_for
from harness.our_client import OurLt, OurLtLauncher
from harness.processes import ROOT
from harness.relay import LocalApp, Relay
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from relay import protocol

from .conftest import sign_in_as

ARTIFACTS = ROOT / "artifacts"
AA_NORMAL, AA_LARGE = 4.5, 3.0
# Blink's preferredColorScheme: 0 is dark, 1 is light.
SCHEMES = {"light": "1", "dark": "0"}

# Every element's own text with its computed colour and the first opaque background behind
# it, the WCAG 2.x contrast ratio of the two, and whether the text is large (>= 24px, or
# >= 18.66px bold), for which AA asks 3:1 instead of 4.5:1.
_CONTRAST_JS = """
function rgba(text) {
  const m = text.match(/rgba?\\(([^)]+)\\)/);
  if (!m) return [0, 0, 0, 0];
  const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function lum(c) {
  const f = v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
}
function background(el) {
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0.5) return c;
  }
  const root = getComputedStyle(document.documentElement).colorScheme || "";
  return matchMedia("(prefers-color-scheme: dark)").matches && root.includes("dark")
    ? [18, 18, 18, 1] : [255, 255, 255, 1];
}
const out = [];
for (const el of document.body.querySelectorAll("*")) {
  const own = [...el.childNodes].filter(n => n.nodeType === 3)
    .map(n => n.textContent).join("").trim();
  const control = el.tagName === "BUTTON" || el.tagName === "INPUT";
  const value = control ? (el.value || el.textContent).trim() : "";
  const text = own || value;
  if (!text || el.offsetParent === null) continue;
  const s = getComputedStyle(el);
  const fg = rgba(s.color), bg = background(el);
  const a = lum(fg), b = lum(bg);
  const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight) >= 700;
  out.push({text: text.slice(0, 40), tag: el.tagName, color: s.color,
            background: "rgb(" + bg.slice(0, 3).join(",") + ")",
            ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05),
            large: size >= 24 || (bold && size >= 18.66)});
}
return out;
"""


def screenshot(browser: WebDriver, tmp_path: Path, name: str) -> Path:
    """The page as NAME.png in the test's tmp dir and in artifacts/ (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(path)), name
    (ARTIFACTS / f"visitor-access-{name}.png").write_bytes(path.read_bytes())
    return path


def below_aa(browser: WebDriver) -> list[dict[str, object]]:
    """The page's text whose contrast with its background is under WCAG AA."""
    found = browser.execute_script(_CONTRAST_JS)
    assert found, "no text measured"
    return [t for t in found if t["ratio"] < (AA_LARGE if t["large"] else AA_NORMAL)]


def echoed(browser: WebDriver) -> dict[str, object]:
    """The local app's /headers echo of the request that made the loaded page: its target
    and its Cookie header (None when it had none)."""
    wait_for(browser, lambda b: b.find_elements(By.TAG_NAME, "pre"), "the app's echo")
    body = browser.find_element(By.TAG_NAME, "pre").text
    assert body.startswith("{"), browser.page_source
    echo = json.loads(body)
    cookies = [v for n, v in echo["headers"] if n.lower() == "cookie"]
    return {"target": echo["target"], "cookie": "; ".join(cookies) if cookies else None}


def status_of(browser: WebDriver, url: str) -> int:
    """The HTTP status of a same-origin GET from the loaded page (Selenium has no status)."""
    return int(
        browser.execute_async_script(
            "const done = arguments[1];"
            "fetch(arguments[0], {redirect: 'manual'}).then(r => done(r.status));",
            url,
        )
    )


def text(browser: WebDriver) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def sign_out(browser: WebDriver, relay: Relay) -> None:
    """Sign out as a user would: the bare domain's sign-in page shows who is signed in and a
    Sign out button."""
    browser.get(f"http://localhost:{relay.port}/accounts/login/")
    assert "You are signed in as" in text(browser)
    browser.find_element(By.ID, "signout").click()
    wait_for(browser, lambda b: "You are signed out" in text(b), "the signed-out page")


@pytest.fixture(scope="module")
def private_tunnel(team: tuple[Relay, str], local_app: LocalApp, launcher: OurLtLauncher) -> OurLt:
    relay, token = team
    return launcher(
        relay, local_app.port, "--token", token, "--subdomain", "team-only", "--private"
    )


@pytest.fixture(scope="module")
def second_private_tunnel(
    team: tuple[Relay, str], local_app: LocalApp, launcher: OurLtLauncher
) -> OurLt:
    relay, token = team
    return launcher(relay, local_app.port, "--token", token, "--subdomain", "team-two", "--private")


@pytest.fixture(scope="module")
def anonymous_tunnel(
    team: tuple[Relay, str], local_app: LocalApp, launcher: OurLtLauncher
) -> OurLt:
    relay, _ = team
    return launcher(relay, local_app.port, "--subdomain", "anon-app")


def test_a_teammate_signs_in_lands_on_the_page_stays_in_and_signing_out_ends_it(
    team: tuple[Relay, str],
    private_tunnel: OurLt,
    second_private_tunnel: OurLt,
    visitor: WebDriver,
    tmp_path: Path,
) -> None:
    relay, _ = team
    host = f"{private_tunnel.name}.localhost:{relay.port}"
    page = f"http://{host}/headers?year=2026&x=a%20b"
    visitor.get(page)
    wait_for(visitor, lambda b: urlsplit(b.current_url).path == "/accounts/login/", "sign-in")
    assert urlsplit(visitor.current_url).netloc == f"localhost:{relay.port}"
    assert private_tunnel.name in visitor.find_element(By.ID, "for-tunnel").text, (
        "the sign-in page says which tunnel it is for"
    )
    screenshot(visitor, tmp_path, "team-signin")
    sign_in_as(visitor, "mate")

    wait_for(visitor, lambda b: urlsplit(b.current_url).netloc == host, "back on the tunnel")
    assert visitor.current_url == page, "the exact page: path and query"
    app_saw = echoed(visitor)
    assert app_saw["target"] == "/headers?year=2026&x=a%20b"
    assert app_saw["cookie"] is None, "the relay's cookie never reaches the app"
    screenshot(visitor, tmp_path, "team-landed")
    cookies = {c["name"]: c for c in visitor.get_cookies()}
    assert cookies[protocol.ACCESS_COOKIE]["httpOnly"]
    assert cookies[protocol.ACCESS_COOKIE]["sameSite"] == "Lax"
    assert (
        "domain" not in cookies[protocol.ACCESS_COOKIE]
        or cookies[protocol.ACCESS_COOKIE]["domain"] == f"{private_tunnel.name}.localhost"
    ), "host-only"

    # The app's own cookies still pass; the relay's stays out of the Cookie header.
    visitor.execute_script("document.cookie = 'app_pref=dark; path=/'")
    visitor.refresh()
    assert urlsplit(visitor.current_url).netloc == host, "a reload needs no second sign-in"
    assert echoed(visitor)["cookie"] == "app_pref=dark"

    # The pass, copied into another browser, works on its tunnel and on no other (same owner).
    access = cookies[protocol.ACCESS_COOKIE]["value"]
    with headless_chromium() as thief:
        for tunnel, lets_in in ((second_private_tunnel, False), (private_tunnel, True)):
            tunnel_host = f"{tunnel.name}.localhost:{relay.port}"
            thief.get(f"http://{tunnel_host}{protocol.TICKET_PATH}?ticket=forged")
            assert "sign-in link" in text(thief) and "not valid" in text(thief)
            thief.add_cookie({"name": protocol.ACCESS_COOKIE, "value": access, "path": "/"})
            thief.get(f"http://{tunnel_host}/headers")
            landed = urlsplit(thief.current_url)
            assert (landed.netloc == tunnel_host) == lets_in, (tunnel.name, thief.current_url)
            if lets_in:
                assert echoed(thief)["cookie"] is None

    sign_out(visitor, relay)
    screenshot(visitor, tmp_path, "team-signed-out")
    visitor.get(page)
    wait_for(
        visitor,
        lambda b: urlsplit(b.current_url).path == "/accounts/login/",
        "sent to sign in again after signing out",
    )


def test_another_user_signs_in_and_sees_the_refusal_page(
    team: tuple[Relay, str], private_tunnel: OurLt, visitor: WebDriver, tmp_path: Path
) -> None:
    relay, _ = team
    visitor.get(f"http://{private_tunnel.name}.localhost:{relay.port}/secret")
    sign_in_as(visitor, "other")
    wait_for(visitor, lambda b: "Not on this tunnel" in text(b), "the refusal page")
    screenshot(visitor, tmp_path, "team-refused")
    assert "signed in as other" in text(visitor)
    assert status_of(visitor, visitor.current_url) == 403
    # Chromium holds no pass for the tunnel: its page still sends the visitor to sign in.
    assert not any(c["name"] == protocol.ACCESS_COOKIE for c in visitor.get_cookies())


def test_the_warning_page_continue_and_a_report_in_the_admin(
    team: tuple[Relay, str],
    anonymous_tunnel: OurLt,
    visitor: WebDriver,
    sign_in: Callable[[Relay], WebDriver],
    tmp_path: Path,
) -> None:
    relay, _ = team
    page = f"http://{anonymous_tunnel.name}.localhost:{relay.port}/headers?item=7"
    visitor.get(page)
    wait_for(visitor, lambda b: b.find_elements(By.ID, "continue"), "the warning page")
    shown = text(visitor)
    assert "an anonymous user" in shown and "not a site of the operator" in shown
    screenshot(visitor, tmp_path, "warning")
    report = visitor.find_element(By.ID, "report").get_attribute("href") or ""

    assert through_warning(visitor)
    assert visitor.current_url == page
    assert echoed(visitor)["target"] == "/headers?item=7"
    assert echoed(visitor)["cookie"] is None, "the warned cookie stays off the app"
    visitor.refresh()
    assert not through_warning(visitor) and echoed(visitor)["target"] == "/headers?item=7"

    note = "a fake parcel-tracking page asking for card numbers"
    visitor.get(report)
    assert urlsplit(visitor.current_url).netloc == f"localhost:{relay.port}"
    wait_for(visitor, lambda b: b.find_elements(By.NAME, "note"), "the report form")
    assert page in text(visitor)
    screenshot(visitor, tmp_path, "report-form")
    visitor.find_element(By.NAME, "note").send_keys(note)
    visitor.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(visitor, lambda b: "Thank you" in b.page_source, "the thank-you page")

    admin = sign_in(relay)
    admin.get(f"http://localhost:{relay.port}/admin/tunnels/abusereport/")
    wait_for(admin, lambda b: note in b.page_source, "the report in the admin")
    screenshot(admin, tmp_path, "admin-reports")
    rows = [r.text for r in admin.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")]
    row = next(r for r in rows if anonymous_tunnel.name in r)
    for expected in (anonymous_tunnel.name, page, "127.0.0.1"):
        assert expected in row, (expected, row)
    admin.find_element(By.PARTIAL_LINK_TEXT, anonymous_tunnel.name).click()
    wait_for(admin, lambda b: note in text(b), "the report's page with the note")


def test_a_name_suspended_from_the_admin_shows_its_reason_to_visitors(
    team: tuple[Relay, str],
    local_app: LocalApp,
    launcher: OurLtLauncher,
    visitor: WebDriver,
    sign_in: Callable[[Relay], WebDriver],
    tmp_path: Path,
) -> None:
    relay, token = team
    tunnel = launcher(relay, local_app.port, "--token", token, "--subdomain", "to-suspend")
    reason = "Phishing reported by three visitors <b>not bold</b>"
    admin = sign_in(relay)
    admin.get(
        f"http://localhost:{relay.port}/admin/tunnels/tunnelsession/?"
        + urlencode({"q": tunnel.name})
    )
    row = wait_for(
        admin,
        lambda b: [
            r
            for r in b.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
            if tunnel.name in r.text
        ],
        "the tunnel's row",
    )[0]  # type: ignore[index]
    row.find_element(By.CSS_SELECTOR, "input[name=_selected_action]").click()
    Select(admin.find_element(By.NAME, "action")).select_by_value("suspend")
    admin.find_element(By.NAME, "index").click()
    wait_for(admin, lambda b: b.find_elements(By.NAME, "reason"), "the reason form")
    admin.find_element(By.NAME, "reason").send_keys(reason)
    screenshot(admin, tmp_path, "admin-suspend")
    admin.find_element(By.NAME, "apply").click()
    wait_for(admin, lambda b: "uspended" in text(b), "the admin's confirmation")

    url = f"http://{tunnel.name}.localhost:{relay.port}/"
    visitor.get(url)
    wait_for(visitor, lambda b: reason in text(b), "the suspended page with the reason")
    screenshot(visitor, tmp_path, "suspended")
    assert not visitor.find_elements(By.TAG_NAME, "b"), "the reason is text, not markup"
    assert status_of(visitor, url) == protocol.SUSPENDED_STATUS == 403
    assert tunnel.process.wait(timeout=15) == 9, "our lt ends with the suspended exit code"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_warning_sign_in_and_report_pages_read_in_light_and_dark(
    team: tuple[Relay, str],
    anonymous_tunnel: OurLt,
    private_tunnel: OurLt,
    scheme: str,
    tmp_path: Path,
) -> None:
    relay, _ = team
    flag = f"--blink-settings=preferredColorScheme={SCHEMES[scheme]}"
    with headless_chromium("--window-size=1100,900", flag) as browser:
        browser.get(f"http://{anonymous_tunnel.name}.localhost:{relay.port}/")
        wait_for(browser, lambda b: b.find_elements(By.ID, "continue"), "the warning page")
        dark = browser.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches")
        assert dark == (scheme == "dark")
        screenshot(browser, tmp_path, f"warning-{scheme}")
        assert below_aa(browser) == []

        browser.get(f"http://{private_tunnel.name}.localhost:{relay.port}/")
        wait_for(browser, lambda b: b.find_elements(By.NAME, "username"), "the sign-in page")
        screenshot(browser, tmp_path, f"signin-{scheme}")
        assert below_aa(browser) == []
        background = browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor"
        )
        assert bool(re.match(r"rgb\((\d{1,2}), ", background)) == dark, (
            "the sign-in page follows the visitor's colour scheme like the warning page",
            background,
        )
        browser.execute_script(
            "document.body.style.color = parseInt(getComputedStyle(document.body)"
            ".backgroundColor.match(/\\d+/)[0]) > 128 ? '#bbb' : '#444'"
        )
        assert below_aa(browser), "the measure itself finds faint text"

        # The bare domain's other visitor pages share the sign-in page's style.
        browser.get(f"http://localhost:{relay.port}/report/?tunnel={anonymous_tunnel.name}")
        wait_for(browser, lambda b: b.find_elements(By.NAME, "note"), "the report form")
        screenshot(browser, tmp_path, f"report-{scheme}")
        assert below_aa(browser) == []
