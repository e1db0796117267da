"""docs/tcp.md's commands, run in order as a reader pastes them: the operator starts the relay
with RELAY_TCP_PORTS, the user opens tunnels with `lt tcp`, and psql and redis-cli go through
them to this machine's PostgreSQL and Redis.

The fences say `no-test:` for tests/docs (whose relay has no TCP range, and which runs each
fence on its own) and name this file. What changes from the page, and only that: 8080
becomes the relay's port (the relay itself gets RELAY_PORT=0 from the environment), the
ports of the documented range 20000-20999 become the same offsets in a free range, and the
example's tunnel port 20017 becomes the port the last `lt tcp` printed. The reader signed in
with `lt login` first (the page says so); the test does that with a token.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs.markdown import Fence, fences, localised
from harness.processes import ROOT, Process, ProcessGroup
from harness.tcp_tunnels import URL, free_port_range, make_users

from bench.procs import client_env

pytestmark = pytest.mark.timeout(120)

PAGE = ROOT / "docs" / "tcp.md"
MARKER = "tests/tcp/test_docs_commands.py"
DOC_LOW, DOC_HIGH = 20000, 20999
EXAMPLE_PORT = 20017
RUN_S = 60.0
# What each client command must print when it worked (exit 0 alone is not enough for
# redis-cli, which exits 0 on an error reply).
EXPECTED = {"psql": "42", "redis-cli": "PONG"}


def page_fences() -> list[Fence]:
    return [f for f in fences(PAGE) if f.is_code and MARKER in f.info]


def mapped(body: str, relay_port: int, low: int) -> str:
    """The fence as run here: 8080 the relay, 20000-20999 the test's range (same offsets)."""
    body = localised(body, relay_port, 0)
    return re.sub(r"\b(2\d{4})\b", lambda m: _port(int(m.group(1)), low), body)


def _port(port: int, low: int) -> str:
    if port == EXAMPLE_PORT or not DOC_LOW <= port <= DOC_HIGH:
        return str(port)
    return str(low + port - DOC_LOW)


@pytest.fixture
def env(tmp_path: Path, relay_template_db: Path) -> dict[str, str]:
    db = tmp_path / "relay.sqlite3"
    shutil.copyfile(relay_template_db, db)
    environ = client_env(DATABASE_URL=f"sqlite:///{db}", DEBUG="true", PYTHONUNBUFFERED="1")
    environ = {k: v for k, v in environ.items() if not k.startswith("RELAY_")}
    environ["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
    environ["LT_CONFIG_DIR"] = str(tmp_path / "lt-config")
    environ["RELAY_PORT"] = "0"  # the page's relay on a free port
    return environ


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


def test_the_pages_fences_cover_the_operator_the_tunnels_and_the_clients() -> None:
    bodies = [f.body.strip() for f in page_fences()]
    assert sum("manage.py runrelay" in b for b in bodies) == 1
    assert sum(b.startswith("lt tcp ") for b in bodies) >= 3
    assert any(b.startswith("psql ") for b in bodies)
    assert any(b.startswith("redis-cli ") for b in bodies)
    assert any("--remote-port" in b for b in bodies)


def test_the_pages_commands_run_as_written(env: dict[str, str], processes: ProcessGroup) -> None:
    tcp_range = free_port_range(DOC_HIGH - DOC_LOW + 1)
    low = int(tcp_range.split("-")[0])
    steps = page_fences()
    operator = next(f for f in steps if "manage.py runrelay" in f.body)
    body = operator.body.strip().replace(f"{DOC_LOW}-{DOC_HIGH}", tcp_range)
    relay = processes.start(["bash", "-c", body], env, name="relay (docs)")
    relay_port = int(relay.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
    # The banner line the page shows, for the range it was given.
    relay.wait_for_line(
        rf"^TCP tunnels: ports {tcp_range} on 127\.0\.0\.1, named tcp://localhost:PORT$"
    )

    reserved = [int(p) for f in steps for p in re.findall(r"--remote-port (\d+)", f.body)]
    users = {"reader": [int(_port(port, low)) for port in reserved]}
    token = make_users(env, users)["reader"]
    login = subprocess.run(
        ["lt", "login", "--host", f"http://localhost:{relay_port}", "--token", token],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_S,
    )
    assert login.returncode == 0, login.stdout + login.stderr

    tunnel: Process | None = None
    tunnel_port = 0
    ran: list[str] = []
    for fence in steps:
        if fence is operator:
            continue
        body = mapped(fence.body.strip(), relay_port, low)
        if body.startswith("lt tcp "):
            if tunnel is not None:
                tunnel.stop()  # the reader's previous example: Ctrl-C
            tunnel = processes.start(["bash", "-c", body], env, name="lt tcp (docs)")
            tunnel_port = int(tunnel.wait_for_line(URL.pattern).group(3))
            for port in re.findall(r"--remote-port (\d+)", body):
                assert tunnel_port == int(port), "the reserved port is the tunnel's"
        else:
            assert tunnel is not None, f"{fence} needs a tunnel above it"
            body = re.sub(rf"\b{EXAMPLE_PORT}\b", str(tunnel_port), body)
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", body],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_S,
            )
            output = done.stdout + done.stderr
            assert done.returncode == 0, f"{fence} exited {done.returncode}:\n{output}"
            program = body.split()[0]
            assert EXPECTED[program] in done.stdout, f"{fence}:\n{output}"
        ran.append(fence.id)
    assert len(ran) == len(steps) - 1
