"""The access log of a TCP tunnel: one line per visitor connection, when it ends, with the
bytes each way (RELAY_ACCESS_LOG=true, RELAY_LOG_FORMAT=json, RELAY_TCP_PORTS to offer TCP)."""

from __future__ import annotations

import json
import socket

from harness.tcp_tunnels import LtTcpLauncher, free_port_range, make_users, start_tcp_app
from harness.waiting import IO_TIMEOUT_S, wait_until


def test_a_tcp_connection_is_one_access_line_when_it_ends(relay_factory, group, tmp_path):
    relay = relay_factory(
        RELAY_TCP_PORTS=free_port_range(4), RELAY_ACCESS_LOG="true", RELAY_LOG_FORMAT="json"
    )
    token = make_users(relay.env, {"tcp-logs": []})["tcp-logs"]
    app_port = start_tcp_app(group)
    lt = LtTcpLauncher(group, tmp_path / "lt")(
        f"http://localhost:{relay.port}", app_port, "--token", token
    )
    with socket.create_connection(("127.0.0.1", lt.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(b"ECHO\nhello through tcp")
        assert sock.recv(100) == b"hello through tcp"
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""  # the app's FIN: a clean end both ways

    def access() -> list[dict]:
        lines = relay.process.output().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [r for r in records if r.get("event") == "access"]

    wait_until(access, IO_TIMEOUT_S, "the connection's access line")
    (line,) = access()
    assert line["kind"] == "tcp" and line["visitor"] == "127.0.0.1"
    assert line["bytes_in"] == len(b"ECHO\nhello through tcp")
    assert line["bytes_out"] == len(b"hello through tcp")
    assert line["end"] == "closed" and line["duration_ms"] >= 0
