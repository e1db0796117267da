"""Real headless Chromium (Debian's `chromium` + `chromium-driver`, installed by `make test`)
signed in to the admin of real relay processes.

Two relays, because Chromium treats the bare name `localhost` like a top-level domain and
refuses `Domain=localhost` cookies by itself: on `localhost` the admin would survive cookie
tossing even without the relay's help. On `tunnels.localhost` Chromium accepts
`Domain=tunnels.localhost` from `<name>.tunnels.localhost`, as it would for a real domain, so
only the relay (relay/headers.py) stands between a tunnel and the admin's cookies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness.browser import headless_chromium, wait_for
from harness.our_client import OurLtLauncher
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import RELAY_TEST_ENV, Relay, manage
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

OPERATOR, PASSWORD = "operator", "a-long-password-for-the-browser-tests"
BARE_DOMAINS = ["localhost", "tunnels.localhost"]


def start_relay(group: ProcessGroup, workdir: Path, template_db: Path, domain: str) -> Relay:
    """`runrelay --port 0 --domain DOMAIN` on its own migrated SQLite copy, plus a superuser."""
    db = workdir / f"relay-{uuid.uuid4().hex[:8]}.sqlite3"
    shutil.copyfile(template_db, db)
    env = {
        **os.environ,
        **RELAY_TEST_ENV,
        "RELAY_ALLOW_ANONYMOUS": "true",
        "RELAY_DOMAIN": domain,
        # The npm client registers at http://localhost:PORT whatever the domain.
        "ALLOWED_HOSTS": f"{domain},.{domain},localhost,127.0.0.1",
        "DATABASE_URL": f"sqlite:///{db}",
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [PYTHON, "manage.py", "createsuperuser", "--noinput", "--username", OPERATOR]
        + ["--email", "operator@example.com"],
        cwd=ROOT,
        env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
        timeout=60,
    )
    args = [PYTHON, "manage.py", "runrelay", "--port", "0", "--bind", "127.0.0.1"]
    process = group.start([*args, "--domain", domain], env, name=f"relay ({domain})")
    match = process.wait_for_line(r"tunnelsite relay listening on http://127\.0\.0\.1:(\d+)")
    return Relay(process=process, port=int(match.group(1)), env=env, domain=domain)


@pytest.fixture(scope="module")
def browser_relays(
    relay_template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Relay]]:
    """One relay per bare domain in BARE_DOMAINS, for the whole module."""
    group = ProcessGroup()
    workdir = tmp_path_factory.mktemp("browser-relays")
    try:
        yield {
            domain: start_relay(group, workdir, relay_template_db, domain)
            for domain in BARE_DOMAINS
        }
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    with headless_chromium("--window-size=1280,1000") as browser:
        yield browser


@pytest.fixture(scope="module")
def sign_in(chromium: WebDriver) -> Callable[[Relay], WebDriver]:
    """Sign Chromium in to a relay's admin at http://DOMAIN:PORT/admin/ (once per relay)."""
    done: set[int] = set()

    def signed_in(relay: Relay) -> WebDriver:
        if relay.port not in done:
            chromium.get(f"http://{relay.domain}:{relay.port}/admin/login/?next=/admin/")
            chromium.find_element(By.NAME, "username").send_keys(OPERATOR)
            chromium.find_element(By.NAME, "password").send_keys(PASSWORD)
            chromium.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
            wait_for(
                chromium, lambda b: b.find_elements(By.ID, "relay-dashboard-link"), "the admin"
            )
            done.add(relay.port)
        return chromium

    return signed_in


USERS_PASSWORD = "team-password-for-browser-tests"
_USERS = """
from django.contrib.auth.models import Group, User
from tunnels.models import ApiToken
users = {{name: User.objects.create_user(name, password={password!r}) for name in
         ("owner", "mate", "other")}}
Group.objects.create(name="devs").user_set.add(users["owner"], users["mate"])
Group.objects.create(name="others").user_set.add(users["other"])
print(ApiToken.issue(users["owner"], name="laptop")[1])
"""


@pytest.fixture(scope="module")
def team(
    relay_template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Relay, str]]:
    """A relay on `localhost` with owner and mate in one group, other in another; the owner's
    token."""
    group = ProcessGroup()
    try:
        relay = start_relay(
            group, tmp_path_factory.mktemp("visitor-pages"), relay_template_db, "localhost"
        )
        made = manage(relay, "shell", "-c", _USERS.format(password=USERS_PASSWORD))
        yield relay, made.strip().splitlines()[-1]
    finally:
        group.stop_all()


@pytest.fixture
def visitor() -> Iterator[WebDriver]:
    """A visitor's own Chromium: a fresh profile, no cookies."""
    with headless_chromium("--window-size=1100,900") as browser:
        yield browser


def sign_in_as(browser: WebDriver, username: str) -> None:
    """Fill in and send the bare domain's sign-in form (not its Sign out, when signed in)."""
    wait_for(browser, lambda b: b.find_elements(By.NAME, "username"), "the sign-in form")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(USERS_PASSWORD)
    browser.find_element(By.XPATH, "//form[.//input[@name='password']]//button").click()


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurLtLauncher]:
    """Starts our lt for a module's tests, each with the module's own config dir."""
    group = ProcessGroup()
    try:
        yield OurLtLauncher(group, tmp_path_factory.mktemp("lt-config"))
    finally:
        group.stop_all()
