"""Shared fixtures: real processes on free ports, and helpers that speak raw bytes.

The classes behind them live in `tests/harness/` (importable as `harness`).

- `relay_factory(**env)` starts `manage.py runrelay --port 0` with its own SQLite file and
  the given `RELAY_*` overrides; `relay` is one such relay shared by the whole session.
- `local_app` is `tests/apps/local_app.py`, a real keep-alive HTTP/1.1 + WebSocket app.
- `lt_factory(relay, ...)` runs the real npm client (`localtunnel@2.0.2`) against a relay.
- `fake_client_factory(relay, ...)` registers over HTTP and opens pool sockets itself, so a
  test controls every byte the relay reads from the tunnel side.
- `relay.visitor(name)` (a `harness.http.Visitor`) and `send_raw(port, data)` talk to the
  relay's public port as a visitor would.
- `wait_until(predicate, timeout)` polls with a deadline (never sleep to synchronise).

Module- and session-scoped variants (`module_relay_factory`, `module_lt_factory`) exist for
tests that can share a process.

Each test is marked with its layer (tests/README.md), from the directory it is in:
`pytest -m unit`, `pytest -m "not e2e"` (the layers that start no process).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import log_capture, pg, schedule
from harness.fake_client import FakeTunnelClient
from harness.http import Answer, send_raw
from harness.our_client import OurLtLauncher
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import (
    LOCAL_APP,
    NO_LIVE_TUNNEL_CAP,
    LocalApp,
    LtLauncher,
    Relay,
    RelayLauncher,
)
from harness.waiting import wait_until
from hypothesis import settings as hypothesis_settings

# --- layers -----------------------------------------------------------------------------------
TESTS = Path(__file__).resolve().parent
LAYERS = {
    "unit": "pure functions and objects fed values, bytes or scopes: no sockets, no database",
    "django": "Django TestCases: views, models, admin and commands on the test database",
    "sockets": "relay objects in this process on real loopback sockets and pipes",
    "e2e": "real processes on port 0: the relay, clients, local apps, browsers, clusters",
}
LAYER_OF_DIRECTORY = {
    ".": "unit",  # tests/test_*.py: checks of the test suite itself
    "unit": "unit",
    "accounts": "django",
    "dashboard": "django",
    "account_page": "django",
    "device": "django",  # `lt login` in the browser: the device flow's views and rows
    "views": "django",
    "inspector_page": "django",  # the request inspector's page (tunnels/inspector.py)
    "structure": "unit",  # AST checks of the source: imports, limits, shared rules
    "sockets": "sockets",
    "protocol": "e2e",
    "hardening": "e2e",
    "datapath": "e2e",
    "e2e": "e2e",
    "access": "e2e",  # the visitor gate on real relays (its sans-IO units run in ms too)
    "cluster": "e2e",
    "browser": "e2e",
    "newcomer": "e2e",
    "bench_smoke": "e2e",
    "client": "e2e",
    "docs": "e2e",
    "network": "e2e",  # network namespaces, tcpdump, netem: the path between lt and the relay
    "sanctions": "e2e",  # the operator's Disconnect and Suspend: relays on Redis, the admin
    "inspector": "e2e",  # the request inspector on real relays (its sans-IO units run in ms too)
    "tcp_relay": "sockets",  # TCP tunnels: the relay's listener and splice, a framing peer
    "tcp_site": "django",  # TCP tunnels: plans, reserved ports, registration, pages
    "tcp_client": "e2e",  # TCP tunnels: `lt tcp` as a process
    "tcp": "e2e",  # TCP tunnels end to end: psql, redis, 100 MiB, two nodes behind HAProxy
    "metrics": "e2e",  # /metrics scraped by a real Prometheus, checked by promtool
    "quota": "e2e",  # account quotas on real relays: two nodes on Redis, restarts, bandwidth
    "quota_site": "django",  # account quotas: usage rows, plans, pages
    "logs": "e2e",  # JSON logs, the access log, and no secret in any byte logged
    "client_package": "e2e",  # `pipx install ./client` into a fresh venv
    "dashboard_cluster": "e2e",  # the dashboard's rates and hour over nodes and restarts
}

# No property test is about speed: Hypothesis' per-example deadline (200 ms) only measured how
# busy the machine was (a loaded CI run took 330 ms for an example that takes 30 ms quietly and
# failed a metrics test as "flaky"). Every @given test runs without it; a test that means a
# time bound asserts it itself, with a deadline of its own.
hypothesis_settings.register_profile("tunnelsite", deadline=None)
hypothesis_settings.load_profile("tunnelsite")


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in LAYERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    files: dict[pytest.Item, tuple[str, str]] = {}
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        directory = parts[0] if len(parts) > 1 else "."
        if directory not in LAYER_OF_DIRECTORY:
            raise pytest.UsageError(
                f"tests/{directory}/ has no layer: add it to LAYER_OF_DIRECTORY in "
                "tests/conftest.py (and to tests/README.md)"
            )
        item.add_marker(LAYER_OF_DIRECTORY[directory])
        files[item] = ("/".join(parts), LAYER_OF_DIRECTORY[directory])
    # The slowest files first (harness/schedule.py); a stable sort keeps each file's tests in
    # the order they had.
    keys = schedule.sort_keys(files.values())
    items.sort(key=lambda item: keys[files[item][0]])


# --- what the processes print -------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def process_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every child process's output goes to a file here too (harness/log_capture.py); when
    the session ends, no relay's or client's output may hold a secret the harness used (an
    error on the session's last test says which, in which file)."""
    where = tmp_path_factory.getbasetemp() / "process-logs"
    log_capture.start(where)
    yield where
    found = log_capture.leaks(log_capture.checked_files(where))
    assert not found, "secrets in what the session's relays and clients printed:\n" + "\n".join(
        str(leak) for leak in found
    )


# --- the relay ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def relay_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, copied for each relay process."""
    db = tmp_path_factory.mktemp("relaydb") / "template.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    return db


@pytest.fixture(scope="session", autouse=True)
def pg_template() -> Iterator[None]:
    """The migrated PostgreSQL database this process copied nodes' databases from, if it
    made one (harness/pg.py), is dropped when the session ends."""
    yield
    pg.drop_template()


@pytest.fixture
def relay_factory(relay_template_db: Path, tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    """Start relays with env overrides (`relay_factory(RELAY_GRACE_S=1)`), for one test."""
    group = ProcessGroup()
    try:
        yield RelayLauncher(group, tmp_path, relay_template_db)
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def module_relay_factory(
    relay_template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Relay]]:
    group = ProcessGroup()
    try:
        yield RelayLauncher(group, tmp_path_factory.mktemp("relays"), relay_template_db)
    finally:
        group.stop_all()


@pytest.fixture
def group() -> Iterator[ProcessGroup]:
    """Processes a test starts itself, stopped when it ends."""
    processes = ProcessGroup()
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def module_group() -> Iterator[ProcessGroup]:
    """Processes a module's fixtures start (a TCP app, lt's launcher), stopped after it."""
    processes = ProcessGroup()
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def relay(relay_template_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """A relay shared by tests that do not change its state in ways others would see.

    Default settings, but for the anonymous cap of live tunnels per address: the session's
    npm clients all register from 127.0.0.1 (see NO_LIVE_TUNNEL_CAP)."""
    group = ProcessGroup()
    try:
        launcher = RelayLauncher(group, tmp_path_factory.mktemp("shared-relay"), relay_template_db)
        yield launcher(**NO_LIVE_TUNNEL_CAP)
    finally:
        group.stop_all()


# --- the local app ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def local_app() -> Iterator[LocalApp]:
    group = ProcessGroup()
    try:
        process = group.start([PYTHON, str(LOCAL_APP)], {**os.environ}, name="local_app")
        match = process.wait_for_line(r"local app listening on http://127\.0\.0\.1:(\d+)")
        yield LocalApp(process, int(match.group(1)))
    finally:
        group.stop_all()


# --- the npm client -------------------------------------------------------------------------
@pytest.fixture
def lt_factory() -> Iterator[LtLauncher]:
    """`lt_factory(relay, app_port, subdomain=None)` runs the npm `lt` for one test."""
    group = ProcessGroup()
    try:
        yield LtLauncher(group)
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def module_lt_factory() -> Iterator[LtLauncher]:
    group = ProcessGroup()
    try:
        yield LtLauncher(group)
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def our_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurLtLauncher]:
    """Our `lt` processes for one module, each with a config directory of its own."""
    group = ProcessGroup()
    try:
        yield OurLtLauncher(group, tmp_path_factory.mktemp("lt-config"))
    finally:
        group.stop_all()


# --- byte-level helpers --------------------------------------------------------------------------
@pytest.fixture
def fake_client_factory() -> Iterator[Callable[..., FakeTunnelClient]]:
    """`fake_client_factory(relay, name=None, source=None)`: closed after the test; each
    client registers from its own loopback address unless `source` is given."""
    clients: list[FakeTunnelClient] = []

    def make(relay: Relay, name: str | None = None, source: str | None = None) -> FakeTunnelClient:
        client = FakeTunnelClient(relay, name, source)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.close()


@pytest.fixture(name="send_raw")
def send_raw_fixture() -> Callable[..., Answer]:
    """`send_raw(port, data, method=None, source=None)`: one raw exchange, parsed."""
    return send_raw


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    return wait_until
