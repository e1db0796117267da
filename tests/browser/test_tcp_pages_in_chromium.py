"""A live TCP tunnel (`lt tcp`, issue 15) on the pages, in real headless Chromium: a relay
process with RELAY_TCP_PORTS, our lt as `lt tcp` on a port reserved for its user, a local
echo server, and a visitor connected to the tunnel's public port.

- the user's account page shows the tunnel's tcp:// address with its Copy button, one
  connection open, no inspector link, and the reserved port;
- the operator's dashboard shows the tcp:// address and "1 open" on the tunnel's row.

Screenshots of both go to artifacts/ (gitignored).
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness.browser import headless_chromium, wait_for
from harness.our_client import OurLtLauncher
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import Relay, manage
from harness.waiting import IO_TIMEOUT_S
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from bench.procs import client_env
from bench.tcp_scenario import free_port_range

from .conftest import start_relay

ARTIFACTS = ROOT / "artifacts"
USER, PASSWORD = "erin", "a-long-password-for-the-tcp-pages"
PORT_SPAN = 20  # RELAY_TCP_PORTS for this relay: a free stretch of ports
_USER = """
from django.contrib.auth.models import User
from tunnels.models import ApiToken, ReservedTcpPort
user = User.objects.create_user({user!r}, password={password!r})
ReservedTcpPort.objects.create(port={port}, user=user, note="erin's database")
print(ApiToken.issue(user, name="tcp")[1])
"""


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo_app() -> Iterator[int]:
    """The user's local TCP service: an echo server on a free port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(IO_TIMEOUT_S)


@pytest.fixture(scope="module")
def tcp_relay(
    relay_template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Relay, str, int]]:
    """A relay offering TCP tunnels, erin with a token and a reserved port (the range's
    first)."""
    first, last = map(int, free_port_range(PORT_SPAN).split("-"))
    group = ProcessGroup()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RELAY_TCP_PORTS", f"{first}-{last}")
            relay = start_relay(
                group, tmp_path_factory.mktemp("tcp-pages"), relay_template_db, "localhost"
            )
        made = manage(relay, "shell", "-c", _USER.format(user=USER, password=PASSWORD, port=first))
        yield relay, made.strip().splitlines()[-1], first
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def tcp_tunnel(
    tcp_relay: tuple[Relay, str, int], echo_app: int, launcher: OurLtLauncher
) -> Iterator[tuple[str, socket.socket]]:
    """`lt tcp` on erin's reserved port, and one visitor connected through it (echoed)."""
    relay, token, port = tcp_relay
    environ = {**client_env(), "LT_CONFIG_DIR": str(launcher.config_dir), "PYTHONUNBUFFERED": "1"}
    args = [PYTHON, "-m", "tunnelsite_client.cli", "tcp", "--port", str(echo_app)]
    args += ["--host", f"http://localhost:{relay.port}", "--token", token]
    process = launcher.group.start([*args, "--remote-port", str(port)], environ, name="lt tcp")
    url = process.wait_for_line(r"your url is: (tcp://\S+)").group(1)
    assert url.endswith(f":{port}"), url
    visitor = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
    try:
        visitor.sendall(b"hello through the tunnel")
        received = b""
        while len(received) < len(b"hello through the tunnel"):
            chunk = visitor.recv(1024)
            assert chunk, f"the tunnel closed the visitor after {received!r}"
            received += chunk
        assert received == b"hello through the tunnel"
        yield url, visitor
    finally:
        visitor.close()


def screenshot(browser: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / f"tcp-{name}.png")), name


def test_the_account_page_shows_the_tcp_address_its_connection_and_the_reserved_port(
    tcp_relay: tuple[Relay, str, int], tcp_tunnel: tuple[str, socket.socket]
) -> None:
    relay, _, port = tcp_relay
    url, _ = tcp_tunnel
    with headless_chromium("--window-size=1280,1000") as browser:
        browser.get(f"http://localhost:{relay.port}/account/")
        wait_for(browser, lambda b: b.find_elements(By.NAME, "username"), "the sign-in form")
        browser.find_element(By.NAME, "username").send_keys(USER)
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.XPATH, "//form[.//input[@name='password']]//button").click()
        item = "//li[contains(@class, 'tunnel-tcp')]"
        wait_for(
            browser,
            lambda b: any(e.text == url for e in b.find_elements(By.CSS_SELECTOR, "code.tcp-url")),
            f"the tunnel's address {url}",
        )
        wait_for(
            browser,
            lambda b: b.find_element(By.XPATH, f"{item}//dd[@class='tcp-connections']").text == "1",
            "one connection open",
        )
        tunnel = browser.find_element(By.XPATH, item)
        assert tunnel.find_element(By.CSS_SELECTOR, "button[data-copy]").text == "Copy"
        assert "Inspect requests" not in tunnel.text
        ports = browser.find_element(By.ID, "tcp_ports").text
        assert str(port) in ports and "erin's database" in ports, ports
        assert "allowed, up to 2 live" in browser.find_element(By.ID, "usage").text
        screenshot(browser, "account-page")


def test_the_dashboard_shows_the_tcp_address_and_its_open_connection(
    tcp_relay: tuple[Relay, str, int],
    tcp_tunnel: tuple[str, socket.socket],
    sign_in: Callable[[Relay], WebDriver],
) -> None:
    relay, _, _ = tcp_relay
    url, _ = tcp_tunnel
    browser = sign_in(relay)
    browser.get(f"http://localhost:{relay.port}/admin/dashboard/")
    row = f"//tr[.//code[@class='tcp-url' and text()='{url}']]"
    wait_for(browser, lambda b: b.find_elements(By.XPATH, row), f"the row of {url}")
    wait_for(
        browser,
        lambda b: b.find_element(By.XPATH, f"{row}/td[@class='tcp-connections']").text == "1 open",
        "1 open on the tunnel's row",
    )
    assert USER in browser.find_element(By.XPATH, row).text
    screenshot(browser, "dashboard")
