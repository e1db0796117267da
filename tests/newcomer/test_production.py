"""The README's production example, as written, on loopback: DEBUG=false, a superuser and a
token from the same shell, our `lt` registering with that token, and the admin and the
dashboard in headless Chromium with their stylesheets (screenshots in artifacts/)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from harness.browser import headless_chromium, wait_for
from harness.http import Visitor
from harness.newcomer import (
    Clone,
    commands,
    fence_after,
    readme_section,
    replace,
    wait_for_sockets,
)
from harness.processes import ROOT
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

QUICK_START = readme_section("Quick start")
DOMAIN = "tunnels.example"
OPERATOR, PASSWORD = "operator", "a-long-password-for-the-newcomer-test"
ARTIFACTS = ROOT / "artifacts"
# Every stylesheet the page links from /static/ loaded and parsed (a 404 has no rules), and
# the admin's CSS took effect (the header's background is the admin's colour, not none).
STYLES_LOADED = """
const sheets = Array.from(document.styleSheets).filter(s => s.href && s.href.includes('/static/'));
const header = document.getElementById('header');
return {
  sheets: sheets.map(s => { try { return [s.href, s.cssRules.length]; } catch (e) {
    return [s.href, -1]; } }),  // a 404 page as a stylesheet: no rules to read
  header: header ? getComputedStyle(header).backgroundColor : null,
};
"""


def production_commands(key: str) -> tuple[str, list[str]]:
    """The example's `export` line (on loopback, on a free port) and its commands."""
    lines = commands(fence_after(QUICK_START, "For a public relay"))
    export, rest = lines[0], lines[1:]
    export = replace(export, "SECRET_KEY=...", f"SECRET_KEY={key}")
    export = replace(export, "RELAY_BIND=0.0.0.0", "RELAY_BIND=127.0.0.1")
    export = replace(export, "RELAY_PORT=80", "RELAY_PORT=0")
    assert export.startswith("export DEBUG=false "), export
    return export, rest


@pytest.fixture
def chromium() -> Iterator[WebDriver]:
    # tunnels.example and its tunnels are this machine: the resolver hint a test suite uses.
    with headless_chromium(
        "--window-size=1280,900",
        f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1, MAP *.{DOMAIN} 127.0.0.1",
    ) as browser:
        yield browser


def styled_screenshot(browser: WebDriver, name: str) -> None:
    """Save the page as artifacts/NAME.png and check its stylesheets loaded and applied."""
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    styles = browser.execute_script(STYLES_LOADED)
    assert styles["sheets"], f"{name}: no stylesheet from /static/"
    for href, rules in styles["sheets"]:
        assert rules > 0, f"{name}: {href} did not load"
    assert styles["header"] not in (None, "rgba(0, 0, 0, 0)"), f"{name}: unstyled {styles}"


def test_the_production_example_serves_a_styled_admin_and_takes_a_token(
    clone: Clone, app: int, chromium: WebDriver
) -> None:
    clone.bootstrap()
    export, (migrate, createsuperuser, createtoken, runrelay) = production_commands(
        secrets.token_urlsafe(50)
    )
    assert migrate.endswith("manage.py migrate"), migrate
    env = clone.env()
    clone.run(f"{export}; {migrate}", env)
    # createsuperuser asks for a password on the terminal; here it comes from the environment.
    superuser = clone.env(DJANGO_SUPERUSER_USERNAME=OPERATOR, DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    noinput = replace(createsuperuser, "createsuperuser", "createsuperuser --noinput")
    clone.run(f"{export}; {noinput} --email operator@example.com", superuser)
    printed = clone.run(f"{export}; {replace(createtoken, 'USERNAME', OPERATOR)}", env)
    token = re.search(r"\blt_[A-Za-z0-9_-]+", printed)
    assert token, printed

    relay = clone.start(f"{export}; {runrelay}", env, "runrelay")
    port = int(relay.wait_for_line(r"tunnelsite relay listening on http://127\.0\.0\.1:(\d+)")[1])
    relay.wait_for_line(rf"tunnels are served at http://<name>\.{re.escape(DOMAIN)}:{port}")
    with Visitor(port, f"127.0.0.1:{port}") as visitor:
        assert visitor.request("GET", "/?new").status == 401  # no token: refused

    lt = clone.start(
        f".venv/bin/lt --port {app} --host http://127.0.0.1:{port} --token {token[0]}",
        env,
        "lt",
    )
    url = lt.wait_for_line(r"your url is: (\S+)")[1]
    name = re.fullmatch(rf"http://([a-z0-9-]+)\.{re.escape(DOMAIN)}:{port}", url)
    assert name, url
    wait_for_sockets(port, name[1])
    with Visitor(port, f"{name[1]}.{DOMAIN}:{port}") as visitor:
        assert visitor.request("GET", "/").status == 200

    site = f"http://{DOMAIN}:{port}"
    chromium.get(f"{site}/admin/login/?next=/admin/")
    styled_screenshot(chromium, "newcomer-admin-login")
    chromium.find_element(By.NAME, "username").send_keys(OPERATOR)
    chromium.find_element(By.NAME, "password").send_keys(PASSWORD)
    chromium.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(chromium, lambda b: b.find_elements(By.ID, "relay-dashboard-link"), "the admin")
    styled_screenshot(chromium, "newcomer-admin")
    chromium.find_element(By.ID, "relay-dashboard-link").click()
    wait_for(
        chromium,
        lambda b: name[1] in b.find_element(By.ID, "dashboard-tunnels").text,
        f"tunnel {name[1]} on the dashboard",
    )
    styled_screenshot(chromium, "newcomer-dashboard")
    chromium.get(url)  # the tunnel itself, through the resolver hint
    wait_for(chromium, lambda b: "Directory listing" in b.page_source, "the tunnel's page")

    assert lt.interrupt() == 0, lt.output()
    relay.interrupt()
    for job in (relay, lt):
        assert "Traceback" not in job.output(), job.output()
    assert token[0] not in relay.output(), "the relay printed the token"
