"""`lt login` in the browser, whole: a real `lt login` process, a real relay, and a user
approving (or denying) in headless Chromium: the link lt prints leads through the sign-in
back to the device's page; the token lt saves opens a tunnel as the user who approved."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.browser import wait_for
from harness.local_apps import ThreadedHttpApp
from harness.lt_process import LtProcess, clean_lt_env, name_of
from harness.relay import Relay, manage
from harness.waiting import wait_until
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tunnelsite_client.cli import EXIT_DENIED

from .conftest import sign_in_as

CODE_LINE = r"open (\S+) and enter the code: ([A-Z]{4}-[A-Z]{4})$"
_OWNER_OF = """
from tunnels.models import TunnelSession
row = TunnelSession.objects.filter(subdomain={name!r}).first()
print(row.owner.username if row and row.owner else "-")
"""


@pytest.fixture
def lt_env(tmp_path: Path) -> dict[str, str]:
    return clean_lt_env(tmp_path / "lt-config")


@pytest.fixture
def started(lt_env: dict[str, str]) -> Iterator[list[LtProcess]]:
    processes: list[LtProcess] = []
    yield processes
    for process in processes:
        process.stop()


def lt(started: list[LtProcess], env: dict[str, str], *args: str) -> LtProcess:
    process = LtProcess(list(args), env)
    started.append(process)
    return process


def test_a_user_approves_lt_in_chromium_and_the_token_is_theirs(
    team: tuple[Relay, str], visitor: WebDriver, lt_env: dict[str, str], started
) -> None:
    relay, _ = team
    login = lt(started, lt_env, "login", "--host", f"http://127.0.0.1:{relay.port}", "--no-browser")
    match = login.wait_for_line(CODE_LINE)
    code = match.group(2)
    complete = login.wait_for_line(r"\(or open (\S+)\)$").group(1)
    visitor.get(complete)
    sign_in_as(visitor, "mate")
    wait_for(visitor, lambda b: b.find_elements(By.ID, "approve"), "the device's page")
    assert visitor.find_element(By.ID, "user-code").text == code
    assert visitor.find_element(By.ID, "device-name").text == socket.gethostname()
    assert visitor.find_element(By.ID, "device-address").text == "127.0.0.1"
    visitor.find_element(By.ID, "approve").click()
    done = wait_for(visitor, lambda b: b.find_elements(By.ID, "done"), "the approval")
    assert done[0].text == "You can close this tab; lt is signed in."  # type: ignore[index]
    assert login.wait() == 0, login.errors
    app = ThreadedHttpApp().start()
    try:
        tunnel = lt(started, lt_env, "--port", str(app.port))
        name = name_of(tunnel.url())
        wait_until(
            lambda: (
                manage(relay, "shell", "-c", _OWNER_OF.format(name=name)).strip().endswith("mate")
            ),
            message="the tunnel to be mate's",
        )
    finally:
        app.stop()


def test_a_user_types_the_code_and_denies(
    team: tuple[Relay, str], visitor: WebDriver, lt_env: dict[str, str], started
) -> None:
    relay, _ = team
    login = lt(started, lt_env, "login", "--host", f"http://127.0.0.1:{relay.port}", "--no-browser")
    verify, code = login.wait_for_line(CODE_LINE).groups()
    visitor.get(verify)
    sign_in_as(visitor, "other")
    field = wait_for(visitor, lambda b: b.find_elements(By.NAME, "code"), "the code form")
    field[0].send_keys(code.lower().replace("-", ""))  # type: ignore[index]
    visitor.find_element(By.ID, "continue").click()
    wait_for(visitor, lambda b: b.find_elements(By.ID, "deny"), "the device's page")
    visitor.find_element(By.ID, "deny").click()
    wait_for(visitor, lambda b: b.find_elements(By.ID, "denied"), "the denial")
    assert login.wait() == EXIT_DENIED
    assert not (Path(lt_env["LT_CONFIG_DIR"]) / "login.json").exists()
