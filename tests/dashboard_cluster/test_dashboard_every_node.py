"""The admin dashboard's hour and rates cover every node, and a restarted relay keeps the
hour: two nodes on PostgreSQL and Redis with our `lt` and real visitors, the dashboard's JSON
and its page in headless Chromium; a node killed and started again; a single relay stopped
and started again on its SQLite database."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.browser import headless_chromium, wait_for
from harness.nodes import Node, Nodes, fresh_nodes
from harness.our_client import OurLtLauncher
from harness.processes import ProcessGroup
from harness.relay import RELAY_COMMAND, LocalApp, Relay, RelayLauncher, manage
from harness.waiting import wait_until
from selenium.webdriver.common.by import By

pytestmark = pytest.mark.timeout(180)

DATA = "/admin/dashboard/data"
PASSWORD = "dashboard-tests-only-password"
# An operator with a password (for Chromium's sign-in form) and a signed-in session (for the
# JSON), made in one management shell.
OPERATOR = f"""
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
admin = User.objects.create_superuser("operator", password={PASSWORD!r})
session = SessionStore()
session[SESSION_KEY] = str(admin.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = admin.get_session_auth_hash()
session.create()
print("SESSION", session.session_key)
"""
ON_BRAVO, ON_ALPHA = 30, 20  # requests through each node's own tunnel
ROWS_WAIT_S = 30.0  # a node writes its current minute every RELAY_FLUSH_S (5 s by default)


def session_of(out: str) -> list[tuple[str, str]]:
    words = out.split()
    return [("Cookie", f"sessionid={words[words.index('SESSION') + 1]}")]


def data(relay: Relay, cookie: list[tuple[str, str]]) -> dict[str, Any]:
    answer = relay.get(DATA, headers=cookie)
    assert answer.status == 200, answer
    return answer.json()


def hour_requests(shown: dict[str, Any]) -> int:
    return sum(minute[1] for minute in shown["minutes"])


def counting(relay: Relay, cookie: list[tuple[str, str]], at_least: int) -> Any:
    """For wait_until: the dashboard's JSON once its hour counts `at_least` requests."""

    def shown() -> dict[str, Any] | None:
        answer = data(relay, cookie)
        return answer if hour_requests(answer) >= at_least else None

    return shown


def visit(relay: Relay, name: str, count: int) -> None:
    for _ in range(count):
        assert relay.get("/hello", name=name).status == 200


@pytest.fixture(scope="module")
def nodes() -> Iterator[Nodes]:
    with fresh_nodes() as made:
        yield made


@pytest.fixture(scope="module")
def two_nodes(nodes: Nodes) -> tuple[Node, Node]:
    return nodes.start("alpha"), nodes.start("bravo")


@pytest.fixture(scope="module")
def cookie(nodes: Nodes) -> list[tuple[str, str]]:
    return session_of(nodes.manage("shell", "-c", OPERATOR))


@pytest.fixture(scope="module")
def lt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurLtLauncher]:
    group = ProcessGroup()
    try:
        yield OurLtLauncher(group, tmp_path_factory.mktemp("lt-config"))
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def traffic(
    two_nodes: tuple[Node, Node],
    cookie: list[tuple[str, str]],
    lt: OurLtLauncher,
    local_app: LocalApp,
) -> dict[str, Any]:
    """Bravo's traffic first, seen from alpha (which carries none yet), then alpha's own;
    what alpha's dashboard showed after each."""
    alpha, bravo = two_nodes
    on_bravo = lt(bravo, local_app.port)
    visit(bravo, on_bravo.name, ON_BRAVO)
    after_bravo = wait_until(
        counting(alpha, cookie, ON_BRAVO),
        ROWS_WAIT_S,
        "alpha's dashboard to count bravo's requests",
    )
    on_alpha = lt(alpha, local_app.port)
    visit(alpha, on_alpha.name, ON_ALPHA)
    after_both = wait_until(
        counting(alpha, cookie, ON_BRAVO + ON_ALPHA),
        ROWS_WAIT_S,
        "alpha's dashboard to count both nodes' requests",
    )
    return {"after_bravo": after_bravo, "after_both": after_both}


def test_a_nodes_hour_counts_the_other_nodes_requests(traffic: dict[str, Any]) -> None:
    assert hour_requests(traffic["after_bravo"]) == ON_BRAVO
    assert hour_requests(traffic["after_both"]) == ON_BRAVO + ON_ALPHA
    assert traffic["after_both"]["node"] == "alpha"
    shown = traffic["after_both"]
    assert len(shown["minutes"]) == 60
    starts = [minute[0] for minute in shown["minutes"]]
    assert starts == sorted(starts) and starts[-1] - starts[0] == 59 * 60
    # The bytes too: every answer of the local app carried a body out to the visitor.
    assert sum(minute[3] for minute in shown["minutes"]) > 0


def test_a_nodes_rates_include_the_other_nodes_traffic(traffic: dict[str, Any]) -> None:
    """Alpha had carried nothing when bravo's requests reached its dashboard: a rate above
    zero there is bravo's, from bravo's rows."""
    shown = traffic["after_bravo"]
    assert shown["requests_per_s"] > 0
    assert shown["bytes_out_per_s"] > 0
    assert ON_BRAVO / 120 <= shown["requests_per_s"] <= ON_BRAVO


def test_the_page_in_chromium_charts_both_nodes_requests(
    two_nodes: tuple[Node, Node], traffic: dict[str, Any]
) -> None:
    alpha, _ = two_nodes
    with headless_chromium("--window-size=1280,1000") as browser:
        browser.get(f"http://localhost:{alpha.port}/admin/login/?next=/admin/dashboard/")
        browser.find_element(By.NAME, "username").send_keys("operator")
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

        def charted(b: Any) -> int:
            titles = b.find_elements(By.CSS_SELECTOR, "#dashboard-chart g.minute title")
            texts = [title.get_attribute("textContent") or "" for title in titles]
            return sum(int(m.group(1)) for t in texts if (m := re.search(r"(\d+) requests?", t)))

        wait_for(browser, lambda b: charted(b) == ON_BRAVO + ON_ALPHA, "the chart's 50 requests")


def test_a_node_killed_and_started_again_keeps_the_hour(
    nodes: Nodes,
    two_nodes: tuple[Node, Node],
    cookie: list[tuple[str, str]],
    traffic: dict[str, Any],
) -> None:
    alpha, _ = two_nodes
    total = ON_BRAVO + ON_ALPHA
    # Both nodes' minutes are in the rows (batches, RELAY_FLUSH_S apart), then alpha dies
    # without a chance to write anything more.
    wait_until(
        lambda: nodes.query("SELECT SUM(requests) FROM tunnels_trafficminute")[0][0] == total,
        ROWS_WAIT_S,
        "both nodes' minutes in the database",
    )
    alpha.process.signal(signal.SIGKILL)
    alpha.process.wait()
    again = nodes.start("alpha")
    assert hour_requests(data(again, cookie)) == total
    rows = nodes.query("SELECT node, SUM(requests) FROM tunnels_trafficminute GROUP BY node")
    assert dict(rows) == {"alpha": ON_ALPHA, "bravo": ON_BRAVO}


def test_a_single_relay_stopped_and_started_again_keeps_the_hour(
    relay_factory: RelayLauncher, local_app: LocalApp, lt: OurLtLauncher, tmp_path: Path
) -> None:
    relay = relay_factory()
    cookie = session_of(manage(relay, "shell", "-c", OPERATOR))
    tunnel = lt(relay, local_app.port)
    visit(relay, tunnel.name, 7)
    # Stopped at once: the requests are in no row yet, the shutdown writes them.
    assert relay.process.stop() == 0
    group = ProcessGroup()
    try:
        process = group.start(RELAY_COMMAND, relay.env, name="relay again")
        port = int(process.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        again = Relay(process=process, port=port, env=relay.env)
        shown = data(again, cookie)
        assert hour_requests(shown) == 7
        assert shown["node"] is None
    finally:
        group.stop_all()
