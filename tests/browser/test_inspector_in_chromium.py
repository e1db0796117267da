"""The request inspector's page in real headless Chromium, against a real relay, our lt and
the real local app (tests/apps/local_app.py): a request appears in the list without a reload,
opens with its JSON body pretty-printed and its credentials marked redacted, is replayed with
an edited body and the new answer shows beside the old; an exchange whose path, headers and
body carry `<script>` and `<img onerror>` runs nothing. Screenshots (light, dark, phone width)
go to artifacts/, each with every text's contrast computed against WCAG AA."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from harness.browser import headless_chromium, wait_for
from harness.our_client import OurLt, OurLtLauncher
from harness.processes import ROOT, ProcessGroup
from harness.relay import LocalApp, Relay
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .conftest import sign_in_as

NAME = "inspect-me"
ARTIFACTS = ROOT / "artifacts"
EVIL = '<img src=x onerror="window.pwned=1">'
EVIL_BODY = b"<script>window.pwned=1</script><img src=x onerror=window.pwned=1>"
EVIL_PATH = "/<script>window.pwned=1</script>"

# Every element with its own text in the inspector: its colour against the first opaque
# background behind it, as WCAG 2's contrast ratio (relative luminance of sRGB).
CONTRAST_JS = """
function lum(c) {
  const [r, g, b] = c.slice(0, 3).map((v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function rgba(s) {
  const m = s.match(/[\\d.]+/g).map(Number);
  return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
}
function background(node) {
  for (let n = node; n; n = n.parentElement) {
    const c = rgba(getComputedStyle(n).backgroundColor);
    if (c[3] > 0.99) return c;
  }
  return rgba(getComputedStyle(document.documentElement).backgroundColor || "rgb(255,255,255)");
}
const worst = [];
for (const node of document.querySelectorAll("#inspector *")) {
  const own = Array.from(node.childNodes).some((c) => c.nodeType === 3 && c.textContent.trim());
  if (!own || !node.getClientRects().length) continue;
  const style = getComputedStyle(node);
  if (style.visibility === "hidden" || style.display === "none") continue;
  const fg = rgba(style.color), bg = background(node);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  if (ratio < 4.5) {
    worst.push([node.tagName, node.className, node.textContent.slice(0, 40), ratio.toFixed(2)]);
  }
}
return worst;
"""


@pytest.fixture(scope="module")
def owners_tunnel(
    team: tuple[Relay, str], local_app: LocalApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OurLt]:
    relay, token = team
    group = ProcessGroup()
    try:
        launcher = OurLtLauncher(group, tmp_path_factory.mktemp("lt-config"))
        yield launcher(relay, local_app.port, "--token", token, "--subdomain", NAME)
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def owner(team: tuple[Relay, str], owners_tunnel: OurLt) -> Iterator[WebDriver]:
    """The owner's Chromium, signed in and on the inspector's page."""
    relay, _ = team
    with headless_chromium("--window-size=1280,1000") as browser:
        browser.get(f"http://localhost:{relay.port}/account/tunnels/{NAME}/")
        sign_in_as(browser, "owner")
        wait_for(browser, lambda b: b.find_elements(By.ID, "inspector-empty"), "the inspector")
        # Gone if the page reloads: proves the list is filled by the page's polling.
        browser.execute_script("window.openedOnce = true;")
        yield browser


def visit(relay: Relay, target: str, body: bytes, headers: list[tuple[str, str]]) -> int:
    """POST to the tunnel as a visitor; the app's status (the local app answers its one POST
    route, /sha256, and 405 to any other)."""
    answer = relay.request("POST", target, name=NAME, headers=headers, body=body)
    assert answer.complete, answer
    return answer.status


def row(browser: WebDriver, path: str) -> Any:
    for candidate in browser.find_elements(By.CSS_SELECTOR, "tr.request"):
        if candidate.find_element(By.CSS_SELECTOR, "td.path span").text == path:
            return candidate
    return None


def detail_text(browser: WebDriver, which: str) -> str:
    return browser.find_element(By.ID, f"exchange-{which}").text


def contrast_failures(browser: WebDriver) -> list[list[str]]:
    return browser.execute_script(CONTRAST_JS)


def screenshot(browser: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / f"inspector-{name}.png"))


def test_a_request_appears_opens_as_pretty_json_and_replays_with_an_edited_body(
    team: tuple[Relay, str], owner: WebDriver
) -> None:
    relay, _ = team
    sent = json.dumps({"event": "push", "ref": "main"}).encode()
    headers = [("Content-Type", "application/json"), ("Cookie", "session=visitor-secret")]
    assert visit(relay, "/sha256", sent, headers) == 200
    wait_for(owner, lambda b: row(b, "/sha256"), "the request in the list")
    assert owner.execute_script("return window.openedOnce === true;"), "no reload"
    listed = row(owner, "/sha256").text
    assert "POST" in listed and "200" in listed

    row(owner, "/sha256").click()
    wait_for(owner, lambda b: "Captured" in detail_text(b, "original"), "the open request")
    original = owner.find_element(By.ID, "exchange-original")
    request_body = original.find_elements(By.CSS_SELECTOR, ".body pre")[0].text
    assert request_body == json.dumps(json.loads(sent), indent=2), "pretty JSON first"
    redacted = original.find_elements(By.CSS_SELECTOR, "table.headers .redacted")
    assert redacted and redacted[0].text == "[redacted]"
    assert "visitor-secret" not in owner.page_source
    answer = json.loads(original.find_elements(By.CSS_SELECTOR, ".body pre")[1].text)
    assert answer == {"sha256": hashlib.sha256(sent).hexdigest(), "length": len(sent)}

    owner.find_element(By.ID, "replay-edit").click()
    body = owner.find_element(By.ID, "replay-body")
    assert body.get_attribute("value") == sent.decode(), "the form is filled from the capture"
    edited = b'{"event": "replayed"}'
    body.clear()
    body.send_keys(edited.decode())
    owner.find_element(By.ID, "replay-send").click()
    wait_for(owner, lambda b: b.find_element(By.ID, "exchange-replay").is_displayed(), "the replay")
    replayed = owner.find_element(By.ID, "exchange-replay")
    new_answer = json.loads(replayed.find_elements(By.CSS_SELECTOR, ".body pre")[1].text)
    assert new_answer == {"sha256": hashlib.sha256(edited).hexdigest(), "length": len(edited)}
    # Beside the old one at 1280 px: same top, the replay to the right.
    left, right = original.rect, replayed.rect
    assert abs(left["y"] - right["y"]) < 2 and right["x"] > left["x"] + left["width"] / 2
    # The replay is an exchange of its own: it joins the list, marked as a replay.
    wait_for(
        owner,
        lambda b: "replay of #" in b.find_element(By.ID, "inspector-requests").text,
        "the replay in the list",
    )

    assert contrast_failures(owner) == []
    screenshot(owner, "light")
    owner.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    try:
        assert (
            owner.execute_script(
                "return getComputedStyle(document.getElementById('inspector')).backgroundColor"
            )
            == "rgb(13, 17, 23)"
        ), "the dark theme is on"
        assert contrast_failures(owner) == []
        screenshot(owner, "dark")
    finally:
        owner.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    owner.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        # Stacked on a phone: the replay below the original, nothing wider than the screen.
        wait_for(
            owner,
            lambda b: (
                b.find_element(By.ID, "exchange-replay").rect["y"]
                > b.find_element(By.ID, "exchange-original").rect["y"] + 10
            ),
            "the exchanges stacked",
        )
        assert owner.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;"
        ), "no sideways scrolling at 390 px"
        assert contrast_failures(owner) == []
        screenshot(owner, "phone")
    finally:
        owner.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_hostile_exchange_is_shown_as_text_and_runs_nothing(
    team: tuple[Relay, str], owner: WebDriver
) -> None:
    relay, _ = team
    owner.execute_script("window.pwned = undefined;")
    status = visit(relay, EVIL_PATH, EVIL_BODY, [("Content-Type", "text/html"), ("X-Evil", EVIL)])
    assert status == 405
    wait_for(owner, lambda b: row(b, EVIL_PATH), "the hostile request, its path as text")
    row(owner, EVIL_PATH).click()
    wait_for(owner, lambda b: EVIL in detail_text(b, "original"), "its header value as text")
    original = owner.find_element(By.ID, "exchange-original")
    assert EVIL_BODY.decode() in original.find_elements(By.CSS_SELECTOR, ".body pre")[0].text
    for tab in original.find_elements(By.CSS_SELECTOR, ".tab"):  # every view of the body
        tab.click()
    assert owner.find_elements(By.CSS_SELECTOR, "#inspector img, #inspector script") == []
    assert owner.execute_script("return window.pwned;") is None


def test_a_big_binary_upload_shows_what_was_kept_and_replays_only_with_a_whole_body(
    team: tuple[Relay, str], owner: WebDriver
) -> None:
    relay, _ = team
    upload = bytes(range(256)) * 4096  # 1 MiB, not UTF-8: hex is its one view
    headers = [("Content-Type", "application/octet-stream")]
    assert visit(relay, "/sha256?big", upload, headers) == 200
    wait_for(owner, lambda b: row(b, "/sha256?big"), "the upload in the list")
    assert "1.0 MiB" in row(owner, "/sha256?big").text
    row(owner, "/sha256?big").click()
    wait_for(owner, lambda b: "kept" in detail_text(b, "original"), "the open upload")
    original = owner.find_element(By.ID, "exchange-original")
    request_body = original.find_elements(By.CSS_SELECTOR, ".body")[0]
    assert request_body.find_element(By.CSS_SELECTOR, ".truncated").text == (
        "First 64 KiB of 1.0 MiB kept."  # RELAY_INSPECT_BODY_BYTES's default
    )
    assert [t.text for t in request_body.find_elements(By.CSS_SELECTOR, ".tab")] == ["Hex"]
    dump = request_body.find_element(By.CSS_SELECTOR, "pre.hex").text.splitlines()
    assert dump[0].startswith("00000000  00 01 02 03") and len(dump) == 64 * 1024 // 16

    owner.find_element(By.ID, "replay-as-is").click()
    wait_for(owner, lambda b: b.find_element(By.ID, "replay-error").is_displayed(), "the refusal")
    refusal = owner.find_element(By.ID, "replay-error").text
    assert refusal.startswith("The relay cannot send this:"), refusal
    assert "cannot be sent again as it was" in refusal, refusal
    assert not owner.find_element(By.ID, "exchange-replay").is_displayed()


def test_the_list_keeps_no_more_rows_than_the_relay_keeps_requests(
    team: tuple[Relay, str], owner: WebDriver
) -> None:
    relay, _ = team
    assert owner.find_elements(By.CSS_SELECTOR, "tr.request"), "rows from the tests before"
    for n in range(55):
        assert relay.get(f"/hello?n={n}", name=NAME).status == 200
    wait_for(owner, lambda b: row(b, "/hello?n=54"), "the newest request")
    paths = [r.find_element(By.CSS_SELECTOR, "td.path span").text for r in _rows(owner)]
    assert len(paths) == 50, "RELAY_INSPECT_REQUESTS's default, like the relay's memory"
    assert paths == [f"/hello?n={n}" for n in range(54, 4, -1)], "newest first, oldest gone"


def _rows(browser: WebDriver) -> list[Any]:
    return browser.find_elements(By.CSS_SELECTOR, "tr.request")


HOSTILE_METHOD = "M" * 8000
HOSTILE_PATH = "/" + "p" * 7999
# The document's width and the viewport's, less its scroll bar.
WIDTH_JS = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"


def test_an_8000_character_method_and_path_do_not_widen_the_page(
    team: tuple[Relay, str], owner: WebDriver
) -> None:
    """Any visitor chooses the method and the path (8,000 characters each): they are
    clipped with the whole text in a title, and the page stays as wide as the window at 1280
    and 390 px, the detail of the long method open."""
    relay, _ = team
    # Two requests: the relay's request line holds 8 KiB (RELAY_MAX_REQUEST_LINE_BYTES).
    answer = relay.request("GET", HOSTILE_PATH, name=NAME)
    assert answer.complete and answer.status != 414, answer
    long_method = relay.request(HOSTILE_METHOD, "/long-method", name=NAME)
    assert long_method.complete and long_method.status != 414, long_method
    wait_for(owner, lambda b: row(b, "/long-method"), "the long method's request in the list")
    method_cell = row(owner, "/long-method").find_element(By.CSS_SELECTOR, "td.method")
    assert method_cell.get_attribute("title") == HOSTILE_METHOD
    hostile_row = "tr.request td.path[title^='/ppp']"
    wait_for(
        owner,
        lambda b: b.find_elements(By.CSS_SELECTOR, hostile_row),
        f"the hostile request in the list (the relay answered {answer.status})",
    )
    hostile = owner.find_element(By.CSS_SELECTOR, hostile_row).find_element(By.XPATH, "..")
    assert hostile.find_element(By.CSS_SELECTOR, "td.path").get_attribute("title") == HOSTILE_PATH
    row(owner, "/long-method").click()
    wait_for(owner, lambda b: "long-method" in detail_text(b, "original"), "its detail")
    width, window = owner.execute_script(WIDTH_JS)
    assert width == window, f"the page is {width} px wide in a {window} px window"
    screenshot(owner, "hostile-1280")
    owner.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        wait_for(owner, lambda b: b.execute_script("return innerWidth") == 390, "390 px")
        width, window = owner.execute_script(WIDTH_JS)
        assert width == window, f"the page is {width} px wide in a {window} px window"
        screenshot(owner, "hostile-phone")
    finally:
        owner.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
