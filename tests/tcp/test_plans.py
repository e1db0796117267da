"""A plan's say over TCP tunnels, end to end: a plan without TCP tunnels is refused with its
name, and a plan's bytes per day count a TCP tunnel's bytes: the connection that crosses
the quota is closed, and the next one is refused before the app hears of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.relay import Relay
from harness.tcp_tunnels import LtTcpLauncher, make_plan_user, run_refused

from bench.tcp_transfer import connect, download, stats

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
QUOTA = 2 * MIB  # the plan's bytes per day (in + out)
EXIT_FORBIDDEN = 4  # client/tunnelsite_client/cli.py EXIT_CODES[403]


def test_a_plan_without_tcp_tunnels_is_refused_with_its_name(
    tcp_relay: Relay, relay_url: str, tcp_app: int, tmp_path: Path
) -> None:
    token = make_plan_user(tcp_relay.env, "http-only", allow_tcp=False)
    code, output = run_refused(relay_url, tcp_app, "--token", token, config_dir=tmp_path)
    assert code == EXIT_FORBIDDEN, output
    assert "Your plan (http-only plan) does not include TCP tunnels" in output
    assert "Traceback" not in output


def test_a_tcp_tunnels_bytes_count_against_the_plans_bytes_per_day(
    lt_tcp: LtTcpLauncher, tcp_relay: Relay, relay_url: str, tcp_app: int
) -> None:
    token = make_plan_user(tcp_relay.env, "metered", max_bytes_per_day=QUOTA)
    lt = lt_tcp(relay_url, tcp_app, "--token", token)
    try:
        assert download(lt.port, MIB // 2).sha256_ok  # within the quota: served whole
        with connect(lt.port) as sock:  # crosses it: cut off on the way (a reset)
            sock.sendall(f"SEND {8 * MIB}\n".encode())
            received = 0
            try:
                while data := sock.recv(256 * 1024):
                    received += len(data)
            except ConnectionResetError:
                pass
        # What was left of the day, and at most one frame past it (the check is per chunk).
        assert received <= QUOTA - MIB // 2 + 256 * 1024, received
        _, before = stats(tcp_app)
        try:  # over it: refused (reset, maybe before connect returns) before the app hears
            with connect(lt.port) as sock:
                sock.sendall(b"SINK\nmore?")
                assert sock.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
        _, after = stats(tcp_app)
        assert after - before == 1  # only the STATS
    finally:
        lt.process.stop()
