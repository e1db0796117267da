"""The relay as a process: it stops when told whatever its output is connected to, it says
in one line why it cannot start, it logs each event once, and one database has one relay.

Every relay here is a real `manage.py runrelay` with its stdout and stderr wired the way a
user's shell or supervisor wires them: a pipe whose reader died (`make run | tee log`, then
Ctrl-C), a pipe nobody reads, a closed descriptor.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import termios
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from harness.http import Answer, Visitor
from harness.processes import PYTHON, ROOT
from harness.relay import free_port, relay_env
from harness.waiting import wait_until

# SIGTERM must stop a relay within RELAY_DRAIN_S (its default, 10 s) plus this margin.
DRAIN_S = 10.0
STOP_MARGIN_S = 5.0
START_S = 20.0
LISTENING = re.compile(r"tunnelsite relay listening on http://[^:]+:(\d+)")


def get(port: int, target: str, host: str | None = None, source: str | None = None) -> Answer:
    with Visitor(port, host or f"127.0.0.1:{port}", source) as visitor:
        return visitor.request("GET", target)


def answers(port: int) -> bool:
    try:
        return get(port, "/api/status").status == 200
    except OSError:
        return False


class RawRelay:
    """`manage.py runrelay ARGS` with stdout/stderr wired as the test says."""

    def __init__(
        self, args: list[str], env: dict[str, str], shell: str = "", **popen: object
    ) -> None:
        command = [PYTHON, "manage.py", "runrelay", *args]
        if shell:  # e.g. `exec "$@" >&-`: redirections a shell applies before exec
            command = ["sh", "-c", shell, "sh", *command]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **popen,  # type: ignore[arg-type]
        )

    def read_until_listening(self) -> int:
        """Read stdout line by line until the listening line; the port."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            match = LISTENING.search(line)
            if match:
                return int(match.group(1))
        pytest.fail(f"the relay did not say it was listening (exit code {self.proc.poll()})")

    def stop_within(self, sig: int, timeout: float) -> float:
        """Send `sig`; the seconds it took to exit (the test fails after `timeout`)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the relay was still running {timeout:g} s after signal {sig}")
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def db(relay_template_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"relay-{uuid.uuid4().hex[:8]}.sqlite3"
    shutil.copyfile(relay_template_db, path)
    return path


@pytest.fixture
def relays() -> Iterator[list[RawRelay]]:
    started: list[RawRelay] = []
    try:
        yield started
    finally:
        for relay in started:
            relay.kill()


def make_it_log(port: int, count: int) -> None:
    """Events that write log lines: a tunnel registering (INFO), pages not found (WARNING)."""
    assert get(port, "/?new").status == 200
    for i in range(count):
        assert get(port, f"/missing/page-{i}").status == 404


# --- item 2: the relay stops when told, whatever its output is ----------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_relay_stops_on_a_signal_after_its_output_pipe_was_closed(db, relays, sig):
    """`make run 2>&1 | tee log`, then Ctrl-C: tee dies first, every write is EPIPE."""
    relay = RawRelay(
        ["--port", "0"], relay_env(db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    relays.append(relay)
    port = relay.read_until_listening()
    relay.proc.stdout.close()  # the reader is gone: writes get EPIPE from now on

    make_it_log(port, 3)
    assert answers(port)

    took = relay.stop_within(sig, DRAIN_S + STOP_MARGIN_S)
    assert relay.proc.returncode == 0
    assert took < DRAIN_S + STOP_MARGIN_S


def pipe_bytes_waiting(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


def test_the_relay_keeps_serving_and_stops_when_nobody_reads_its_output(db, relays):
    """A supervisor that stopped reading: the pipe fills and a plain write() would block."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)  # fills after a few dozen lines
        capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        port = free_port()
        relay = RawRelay(["--port", str(port)], relay_env(db), stdout=write_end, stderr=write_end)
        relays.append(relay)
        os.close(write_end)
        write_end = -1
        wait_until(lambda: answers(port), START_S, "the relay to answer")

        requests = itertools.count()

        def pipe_full() -> bool:
            if pipe_bytes_waiting(read_end) >= capacity - 256:  # the pipe is (nearly) full
                return True
            assert get(port, f"/missing/fill-{next(requests)}").status == 404
            return False

        wait_until(pipe_full, 60, "the relay's output to fill the pipe")
        # Now every log line would block: the relay must still answer, and log, and stop.
        make_it_log(port, 20)
        assert answers(port)

        took = relay.stop_within(signal.SIGTERM, DRAIN_S + STOP_MARGIN_S)
        assert relay.proc.returncode == 0
        assert took < DRAIN_S + STOP_MARGIN_S
    finally:
        os.close(read_end)
        if write_end != -1:
            os.close(write_end)


def test_the_relay_runs_and_stops_with_stdout_and_stderr_closed(db, relays):
    """`runrelay >&- 2>&-`: no descriptor 1 or 2 at all (the next file opened would get it)."""
    port = free_port()
    relay = RawRelay(
        ["--port", str(port)],
        relay_env(db),
        shell='exec "$@" >&- 2>&-',
    )
    relays.append(relay)
    wait_until(lambda: answers(port), START_S, "the relay to answer")

    make_it_log(port, 3)
    assert answers(port)

    relay.stop_within(signal.SIGTERM, DRAIN_S + STOP_MARGIN_S)
    assert relay.proc.returncode == 0


# --- item 3: a relay that cannot listen says why in one line and exits non-zero ----------
def start_failure(relays: list[RawRelay], args: list[str], env: dict[str, str]) -> str:
    """Run a relay expected not to start; its stderr (stdout must say nothing wrong)."""
    relay = RawRelay(args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    relays.append(relay)
    try:
        out, err = relay.proc.communicate(timeout=START_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"runrelay {' '.join(args)} was still running after {START_S:g} s")
    assert relay.proc.returncode != 0, (out, err)
    assert b"Traceback" not in out + err
    return err.decode()


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_taken_port_is_one_line_on_stderr_and_a_non_zero_exit(db, relays):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(start_failure(relays, ["--port", str(port)], relay_env(db)))
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "Address already in use" in line


def test_an_address_that_is_not_this_machines_is_one_line_and_a_non_zero_exit(db, relays):
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): no interface here has it, so bind() fails.
    line = one_line(start_failure(relays, ["--port", "0", "--bind", "192.0.2.1"], relay_env(db)))
    assert "cannot listen on 192.0.2.1" in line
    assert "--bind/RELAY_BIND" in line
    assert "no interface of this machine has that address" in line


def test_a_pool_address_that_cannot_be_bound_stops_the_start_in_one_line(db, relays):
    env = relay_env(db, RELAY_POOL_BIND="192.0.2.1")
    line = one_line(start_failure(relays, ["--port", "0"], env))
    assert "cannot listen on 192.0.2.1 for pool sockets (RELAY_POOL_BIND)" in line


# --- item 4: one line per event ------------------------------------------------------------
def test_each_event_is_logged_once(db, relays):
    relay = RawRelay(
        ["--port", "0"], relay_env(db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    relays.append(relay)
    port = relay.read_until_listening()
    name = f"once-{uuid.uuid4().hex[:8]}"
    assert get(port, f"/{name}").status == 200
    assert get(port, "/missing/page-once").status == 404
    relay.proc.send_signal(signal.SIGTERM)
    out, _ = relay.proc.communicate(timeout=DRAIN_S + STOP_MARGIN_S)
    lines = out.decode().splitlines()

    opened = [line for line in lines if f"tunnel {name} opened" in line]
    not_found = [line for line in lines if "Not Found: /missing/page-once" in line]
    assert len(opened) == 1, lines
    assert len(not_found) == 1, lines
    # The one line has the time, the level and the logger.
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ WARNING django\.request: ", not_found[0])


def test_a_malformed_setting_is_one_line_naming_the_variable(db, relays):
    line = one_line(start_failure(relays, ["--port", "0"], relay_env(db, RELAY_DRAIN_S="soon")))
    assert "RELAY_DRAIN_S='soon' is not a valid number" in line


# --- item 12: one relay per SQLite database ------------------------------------------------
def live_rows(db: Path, name: str) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT is_live, close_reason FROM tunnels_tunnel WHERE subdomain = ?", (name,)
        ).fetchall()


def test_a_second_relay_on_the_same_sqlite_file_is_refused_and_closes_nothing(db, relays):
    first = RawRelay(
        ["--port", "0"], relay_env(db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    relays.append(first)
    port = first.read_until_listening()
    name = f"first-{uuid.uuid4().hex[:8]}"
    assert get(port, f"/{name}").status == 200
    assert live_rows(db, name) == [(1, "")]

    line = one_line(start_failure(relays, ["--port", "0"], relay_env(db)))

    assert f"another relay (pid {first.proc.pid}) is already running" in line
    assert str(db) in line
    assert live_rows(db, name) == [(1, "")]  # the first relay's session is still live
    assert get(port, f"/api/tunnels/{name}/status").status == 200


def test_the_database_is_free_again_once_its_relay_was_killed(db, relays):
    first = RawRelay(
        ["--port", "0"], relay_env(db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    relays.append(first)
    first.read_until_listening()
    first.kill()  # SIGKILL: no cleanup runs, the kernel releases the lock

    second = RawRelay(
        ["--port", "0"], relay_env(db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    relays.append(second)
    port = second.read_until_listening()
    assert answers(port)


def test_relays_on_different_sqlite_files_run_side_by_side(relay_template_db, tmp_path, relays):
    ports = []
    for i in range(2):
        db = tmp_path / f"side-{i}.sqlite3"
        shutil.copyfile(relay_template_db, db)
        relay = RawRelay(
            ["--port", "0"], relay_env(db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        relays.append(relay)
        ports.append(relay.read_until_listening())
    assert all(answers(port) for port in ports)


def test_a_second_signal_stops_a_draining_relay_at_once(relay_factory, local_app, lt_factory):
    """Ctrl-C twice (or SIGTERM then SIGINT): the operator does not want to wait the drain."""
    relay = relay_factory()  # RELAY_DRAIN_S at its default, 10 s
    client = lt_factory(relay, local_app.port)
    key = uuid.uuid4().hex
    visitor = relay.visitor(client.name)
    try:
        with visitor:
            visitor.send(f"GET /slow?key={key} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
            local_app.wait_for_waiting(key, 1)
            relay.process.signal(signal.SIGTERM)
            relay.process.wait_for_line(r"^stopping: no new connections", timeout=5)
            assert relay.process.proc.poll() is None  # draining: the slow request is running

            started = time.monotonic()
            relay.process.signal(signal.SIGINT)
            relay.process.wait(timeout=DRAIN_S)
            assert time.monotonic() - started < 3
    finally:
        local_app.release(key)
