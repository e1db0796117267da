"""A TCP tunnel's port stays with its tunnel across a relay restart (attack finding 1): two
users' `lt tcp` on a two-port range, the relay stopped with SIGTERM and started again on the
same database and port (three times); each lt registers again and gets its own port back,
and a visitor to each port reaches its own app (before, the ports were handed out at
random, and a visitor could reach the other user's app). Real processes: the relay, two of
our lt, two apps."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.processes import PYTHON, ProcessGroup
from harness.relay import RELAY_COMMAND, RELAY_TEST_ENV, Relay, free_port, issue_token
from harness.waiting import IO_TIMEOUT_S, poll, wait_until

RESTART_TIMEOUT_S = 60.0
# Handed out at random, two ports stay with their tunnels through a restart half the time:
# three restarts in a row keep them only one time in eight.
RESTARTS = 3
URL = r"your url is: tcp://[^:\s]+:(\d+)"


def _two_free_ports() -> int:
    """The first of two consecutive ports free on loopback now."""
    for base in range(33000, 60000, 101):
        socks = [socket.socket() for _ in range(2)]
        try:
            for offset, sock in enumerate(socks):
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no two free ports on this machine")


@contextmanager
def banner_app(banner: bytes) -> Iterator[int]:
    """A local TCP app that sends `banner` to each connection, then closes it: its port."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(banner)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def reached(port: int) -> bytes:
    """What a visitor to the relay's `port` reads before the end (b"" when refused or reset)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as sock:
            sock.settimeout(IO_TIMEOUT_S)
            got = b""
            while data := sock.recv(4096):
                got += data
            return got
    except OSError:
        return b""


def test_each_lt_tcp_gets_its_own_port_back_after_a_relay_restart(
    relay_template_db: Path, tmp_path: Path
) -> None:
    db = tmp_path / "relay.sqlite3"
    shutil.copyfile(relay_template_db, db)
    first = _two_free_ports()
    port = free_port()
    env = {
        **os.environ,
        **RELAY_TEST_ENV,
        "DATABASE_URL": f"sqlite:///{db}",
        "PYTHONUNBUFFERED": "1",
        "RELAY_TCP_PORTS": f"{first}-{first + 1}",  # what the test is about: a full range
    }
    group = ProcessGroup()

    def start_relay() -> Relay:
        process = group.start([*RELAY_COMMAND, "--port", str(port)], env, name="relay")
        process.wait_for_line(r"tunnelsite relay listening on")
        return Relay(process=process, port=port, env=env)

    try:
        relay = start_relay()
        tokens = {user: issue_token(relay, user, "laptop") for user in ("eve", "bob")}
        with banner_app(b"EVE-SERVICE") as eve_app, banner_app(b"BOB-SERVICE") as bob_app:
            given: dict[bytes, int] = {}
            for user, app, banner in (("eve", eve_app, b"EVE"), ("bob", bob_app, b"BOB")):
                lt_env = {**os.environ, "LT_CONFIG_DIR": str(tmp_path / user)}
                lt = group.start(
                    [PYTHON, "-m", "tunnelsite_client.cli", "tcp", "--port", str(app)]
                    + ["--host", f"http://localhost:{port}", "--token", tokens[user]],
                    lt_env,
                    name=f"lt tcp {user}",
                )
                given[banner] = int(lt.wait_for_line(URL).group(1))
            assert sorted(given.values()) == [first, first + 1]
            for banner, tcp_port in given.items():
                wait_until(
                    lambda p=tcp_port, b=banner: reached(p).startswith(b),
                    IO_TIMEOUT_S,
                    f"{banner!r} at {tcp_port}",
                )

            for _ in range(RESTARTS):
                relay.process.signal(signal.SIGTERM)
                relay.process.wait()
                relay = start_relay()
                # Each lt registers again; until it has, its port is refused (b""), never
                # the other user's app.
                for banner, tcp_port in given.items():
                    other = b"BOB" if banner == b"EVE" else b"EVE"

                    def own(p: int = tcp_port, b: bytes = banner, o: bytes = other) -> bool:
                        got = reached(p)
                        assert not got.startswith(o), f"port {p} reached {got!r}"
                        return got.startswith(b)

                    assert poll(own, RESTART_TIMEOUT_S), f"{banner!r} lost port {tcp_port}"
    finally:
        group.stop_all()
