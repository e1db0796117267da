"""Nothing secret is printed: not by our `lt`, not in the relay's log (at DEBUG).

Our `lt` runs with a token in `--host` user-info, with `--token`, and with a user name and
password in `--host`, against a relay that refuses it (401), a relay that is down, and a
relay that answers 5xx and echoes the credential back in its message. Everything the
client prints (plain and on a terminal) and everything the relay logs is searched for the
secrets. So are pool secrets (our lt's upgraded pool connections): never logged by the relay,
masked by lt even when a relay echoes one back.
"""

from __future__ import annotations

import json
import secrets
import socket
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from harness.fake_client import UpgradingTunnelClient
from harness.processes import PYTHON, ROOT, Process, ProcessGroup
from harness.relay import Relay
from harness.terminal import Terminal

from bench.procs import client_env


def fake_token() -> str:
    prefix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    return f"lt_{prefix}{secrets.token_urlsafe(24)}"


def manage(relay: Relay, *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def debug_relay(module_relay_factory) -> Relay:
    return module_relay_factory(RELAY_LOG_LEVEL="DEBUG")  # the log is what is checked


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


def lt_env(tmp_path: Path) -> dict[str, str]:
    return client_env(LT_CONFIG_DIR=str(tmp_path / "lt-config"), PYTHONUNBUFFERED="1")


def start_lt(group: ProcessGroup, tmp_path: Path, *args: str) -> Process:
    return group.start(
        [PYTHON, "-m", "tunnelsite_client.cli", "--port", "9", *args], lt_env(tmp_path), "lt"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def credentials(token: str, host: str) -> list[tuple[list[str], set[str]]]:
    """(lt arguments, the secrets in them) for each way of passing a credential."""
    password = secrets.token_hex(12)
    return [
        (["--host", f"http://{token}@{host}"], {token, token[11:]}),
        (["--host", f"http://{host}", "--token", token], {token, token[11:]}),
        (["--host", f"http://alice:{password}@{host}"], {password}),
    ]


def assert_hidden(output: str, hidden: set[str]) -> None:
    for secret in hidden:
        assert secret not in output, f"{secret!r} was printed:\n{output[-3000:]}"


def test_a_refused_token_is_never_printed_by_lt_or_logged_by_the_relay(
    debug_relay: Relay, processes: ProcessGroup, tmp_path: Path
):
    token = fake_token()  # well formed, unknown: the relay refuses it (401)
    for args, hidden in credentials(token, f"localhost:{debug_relay.port}"):
        lt = start_lt(processes, tmp_path, *args)
        assert lt.wait() == 3, lt.output()
        assert "not valid" in lt.output()
        assert_hidden(lt.output(), hidden)
    # The npm client's other way to pass a token: in the path of the relay URL.
    for path in (f"/t/{token}/?new", f"/{token}", f"/api/tunnels/{token}/status"):
        debug_relay.get(path)
    debug_relay.get(f"/?new&token={token}")
    assert_hidden(debug_relay.process.output(), {token, token[11:]})


def test_retry_lines_against_a_relay_that_is_down_never_show_a_secret(
    processes: ProcessGroup, tmp_path: Path
):
    token = fake_token()
    for args, hidden in credentials(token, f"localhost:{closed_port()}"):
        lt = start_lt(processes, tmp_path, *args)
        lt.wait_for_line(r"unreachable.*registering again")
        lt.wait_for_line(r"unreachable.*registering again in [\d.]+ s", timeout=30)
        lt.stop()
        assert "localhost" in lt.output()
        assert_hidden(lt.output(), hidden)


class EchoingRelay(ThreadingHTTPServer):
    """A broken relay: every registration gets a 503 whose message echoes the request's
    credential and URL back."""

    daemon_threads = True

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                message = (
                    f"overloaded; you sent {self.headers.get('Authorization')} for "
                    f"http://{self.headers.get('Host')}{self.path}"
                )
                body = json.dumps({"message": message}).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()


def test_a_relay_answering_5xx_and_echoing_the_credential_gets_it_masked_in_every_line(
    processes: ProcessGroup, tmp_path: Path
):
    relay = EchoingRelay()
    token = fake_token()
    try:
        for args, hidden in credentials(token, f"localhost:{relay.server_address[1]}"):
            lt = start_lt(processes, tmp_path, *args)
            lt.wait_for_line(r"registration failed: overloaded")
            lt.wait_for_line(r"registering again in [\d.]+ s")
            lt.stop()
            assert_hidden(lt.output(), hidden)
    finally:
        relay.shutdown()
        relay.server_close()


def test_a_working_tunnel_shows_no_secret_in_its_status_block_or_url(
    debug_relay: Relay, tmp_path: Path
):
    manage(
        debug_relay,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('carol')",
    )
    token = manage(debug_relay, "createtoken", "carol").strip()
    hidden = {token, token[11:]}
    env = {**lt_env(tmp_path), "TERM": "xterm-256color"}
    host = f"http://{token}@localhost:{debug_relay.port}"
    terminal = Terminal(
        [sys.executable, "-m", "tunnelsite_client.cli", "--port", "9", "--host", host], env
    )
    try:
        terminal.wait_for(r"State\s+online")
        terminal.wait_for(r"Relay\s+http://")
    finally:
        terminal.stop()
    assert_hidden(terminal.text(), hidden)
    assert_hidden(debug_relay.process.output(), hidden)


class PoolEchoingRelay(ThreadingHTTPServer):
    """A broken relay: registrations get an upgraded pool (a pool URL to itself and a secret),
    and each pool upgrade a 401 whose message echoes the secret it was sent."""

    daemon_threads = True

    def __init__(self, secret: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.endswith("/pool"):
                    sent = self.headers.get("Tunnelsite-Pool-Secret")
                    status, answer = 401, {"message": f"secret {sent} refused"}
                else:
                    host = self.headers.get("Host")
                    status, answer = (
                        200,
                        {
                            "id": "echo-pool",
                            "port": 0,
                            "max_conn_count": 1,
                            "url": f"http://echo-pool.{host}",
                            "pool_url": f"http://{host}/api/tunnels/echo-pool/pool",
                            "pool_secret": secret,
                        },
                    )
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()


def test_the_pool_secret_is_masked_in_what_lt_prints_even_when_the_relay_echoes_it(
    processes: ProcessGroup, tmp_path: Path
):
    secret = secrets.token_hex(32)
    relay = PoolEchoingRelay(secret)
    try:
        lt = start_lt(processes, tmp_path, "--host", f"http://localhost:{relay.server_address[1]}")
        lt.wait_for_line(r"lost the relay .*refused")
        lt.stop()
        assert "secret *** refused" in lt.output()
        assert_hidden(lt.output(), {secret})
    finally:
        relay.shutdown()
        relay.server_close()


def test_the_relay_never_logs_a_pool_secret(debug_relay: Relay):
    client = UpgradingTunnelClient(debug_relay)
    try:
        first = client.secret
        assert client.upgrade().status == 101
        assert client.upgrade(client.upgrade_head(secret="f" * 64)).status == 401
        client.register(client.name, source="127.0.0.31", secret=first)  # moved: a new secret
        assert client.upgrade(source="127.0.0.31").status == 101
        debug_relay.wait_for_sockets(client.name, 1)
        assert_hidden(debug_relay.process.output(), {first, client.secret, "f" * 64})
    finally:
        client.close()
