"""The admin dashboard in real headless Chromium, against real relays and the npm client.

A tunnel appears on the open dashboard without a reload, its traffic shows up, the
disconnect button closes it for good (the npm client is refused and exits); and a tunnel
that answers `Set-Cookie: sessionid=...; Domain=.<relay domain>` cannot replace the admin's
session or CSRF cookie.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from harness.browser import through_warning, wait_for
from harness.processes import ROOT, ProcessGroup
from harness.relay import LtLauncher, Relay
from harness.waiting import IO_TIMEOUT_S
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .conftest import BARE_DOMAINS, start_relay

TOSSED = "tossed-by-the-tunnel"
SCREENSHOT = ROOT / "artifacts" / "dashboard.png"


class CookieTossingApp(BaseHTTPRequestHandler):
    """The local app behind the tunnels: `/` tries to plant cookies on the relay's domain
    (given by the Host header), `/cookies` shows what the browser sends back, `/bytes/N`."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        cookies: list[str] = []
        if self.path == "/":
            # lt passes the visitor's Host on: `<name>.<relay domain>:<port>`.
            relay_domain = self.headers["Host"].split(":")[0].split(".", 1)[1]
            body = b"<!doctype html><title>tunnel</title><p>a tunnel page</p>"
            cookies = [
                f"sessionid={TOSSED}; Domain=.{relay_domain}; Path=/",
                f"csrftoken={TOSSED}; Domain={relay_domain}; Path=/",
                "tunnel_own=kept; Path=/",
            ]
        elif self.path == "/cookies":
            body = self.headers.get("Cookie", "").encode()
        elif self.path.startswith("/bytes/"):
            body = b"x" * int(self.path.removeprefix("/bytes/"))
        else:
            body = b"not found"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def disconnecting_relay(
    relay_template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Relay]:
    """A relay of its own for the test whose Disconnect holds: afterwards the tunnel's owner,
    the address 127.0.0.1 of every npm client, may not register there for
    RELAY_DISCONNECT_COOLDOWN_S (the other tests' relays are not held)."""
    group = ProcessGroup()
    try:
        yield start_relay(
            group, tmp_path_factory.mktemp("dashboard-relay"), relay_template_db, "localhost"
        )
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def cookie_app() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CookieTossingApp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def open_dashboard(browser: WebDriver, relay: Relay) -> None:
    browser.get(f"http://{relay.domain}:{relay.port}/admin/")
    browser.find_element(By.ID, "relay-dashboard-link").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "dashboard-tunnels"), "the dashboard")
    # Gone if the page reloads: proves the updates below come from the page's polling.
    browser.execute_script("window.openedOnce = true;")


def row_of(name: str) -> str:
    return f'tr.live-tunnel[data-name="{name}"]'


def still_the_same_page(browser: WebDriver) -> bool:
    return browser.execute_script("return window.openedOnce === true;")


def disconnect(browser: WebDriver, name: str) -> None:
    browser.find_element(By.CSS_SELECTOR, f"{row_of(name)} button.disconnect").click()
    wait_for(
        browser,
        lambda b: f"Disconnecting {name}" in b.find_element(By.TAG_NAME, "body").text,
        "the disconnect message",
    )
    wait_for(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, row_of(name)), "the row to go")


def test_a_tunnel_appears_without_a_reload_shows_traffic_and_goes_when_disconnected(
    sign_in: Callable[[Relay], WebDriver],
    disconnecting_relay: Relay,
    module_lt_factory: LtLauncher,
    cookie_app: int,
) -> None:
    relay = disconnecting_relay
    browser = sign_in(relay)
    open_dashboard(browser, relay)

    client = module_lt_factory(relay, cookie_app)
    url = f"http://{client.name}.localhost:{relay.port}/"
    wait_for(
        browser,
        lambda b: (
            b.find_element(By.CSS_SELECTOR, f"{row_of(client.name)} th a").get_attribute("href")
            == url
        ),
        "the new tunnel's row, linked to its public URL",
    )
    assert still_the_same_page(browser)

    for size in (20_000, 50_000, 80_000, 120_000, 200_000):
        assert relay.get(f"/bytes/{size}", name=client.name).status == 200
    wait_for(
        browser,
        lambda b: (
            b.find_element(By.CSS_SELECTOR, f"{row_of(client.name)} td:nth-of-type(5)").text == "5"
        ),
        "the row to count 5 requests",
    )
    wait_for(
        browser,
        lambda b: any(
            "5 requests" in (title.get_attribute("textContent") or "")
            for title in b.find_elements(By.CSS_SELECTOR, "#dashboard-chart g.minute title")
        ),
        "the chart's current minute to count 5 requests",
    )
    assert still_the_same_page(browser)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))

    disconnect(browser, client.name)
    assert relay.sockets(client.name) is None, "the relay no longer knows the tunnel"
    # It stays off: the npm client ends (its pool port is gone); started again, as a
    # supervisor would, it is refused, prints why and exits.
    assert client.process.wait(IO_TIMEOUT_S) != 0
    again = module_lt_factory.start(relay, cookie_app, subdomain=client.name)
    assert again.wait(IO_TIMEOUT_S) != 0
    assert f"{client.name} was closed by the relay's operator" in again.output()
    assert relay.sockets(client.name) is None


@pytest.mark.parametrize("bare_domain", BARE_DOMAINS)
def test_a_tunnel_cannot_replace_the_admin_session_or_csrf_cookie(
    bare_domain: str,
    sign_in: Callable[[Relay], WebDriver],
    browser_relays: dict[str, Relay],
    module_lt_factory: LtLauncher,
    cookie_app: int,
) -> None:
    relay = browser_relays[bare_domain]
    browser = sign_in(relay)
    open_dashboard(browser, relay)
    admin_tab = browser.current_window_handle
    before = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert {"sessionid", "csrftoken"} <= before.keys()

    client = module_lt_factory(relay, cookie_app)
    tunnel_host = f"{client.name}.{bare_domain}"
    browser.switch_to.new_window("tab")
    browser.get(f"http://{tunnel_host}:{relay.port}/")
    through_warning(browser)  # an anonymous tunnel: its warning page comes first
    planted = browser.get_cookies()
    # The app's three, and the relay's own record that this visitor passed the warning page.
    expected = {"sessionid", "csrftoken", "tunnel_own", "tunnelsite_warned"}
    assert {c["name"] for c in planted} == expected
    assert {c["domain"] for c in planted} == {tunnel_host}, "host-only: the tunnel's own"
    browser.get(f"http://{tunnel_host}:{relay.port}/cookies")
    sent_back = browser.find_element(By.TAG_NAME, "body").text
    assert f"sessionid={TOSSED}" in sent_back and "tunnel_own=kept" in sent_back
    browser.close()
    browser.switch_to.window(admin_tab)

    browser.get(f"http://{bare_domain}:{relay.port}/admin/")
    assert {c["name"]: c["value"] for c in browser.get_cookies()} == before
    assert browser.find_elements(By.ID, "relay-dashboard-link"), "still signed in"
    # A form post passes the CSRF check: the admin's csrftoken is still the one it set.
    open_dashboard(browser, relay)
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, row_of(client.name)), "the row")
    disconnect(browser, client.name)
