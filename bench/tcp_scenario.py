"""The TCP scenario: MB/s through a TCP tunnel (`lt tcp`, its pool upgraded over the relay's
port) against the app directly, at 1 and 10 connections, downloads and uploads, same run.

The app is bench/tcp_app.py; bench/tcp_transfer.py moves the pattern and checks its sha256.
At 10 connections each moves a tenth of the transfer size, so both rows move the same bytes.
Each round measures every row on both targets, in an order rotated every round.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import tcp_transfer
from bench.procs import ROOT, StartError, client_env
from bench.transfer import TransferError, TransferResult

if TYPE_CHECKING:
    from bench.scenarios import Bench

PYTHON = sys.executable
OURS_LT = Path(PYTHON).parent / "lt"
CONNECTIONS = (1, 10)
KINDS = (("download", tcp_transfer.download), ("upload", tcp_transfer.upload))
TARGETS = ("direct", "tcp")
START_TIMEOUT_S = 30.0
SHELL_TIMEOUT_S = 60.0
# RELAY_TCP_PORTS: a run of free ports below Linux's ephemeral range (32768-60999).
RANGE_LOW, RANGE_HIGH = 20000, 32000

_USER = """
from django.contrib.auth import get_user_model
from tunnels.models import ApiToken
user = get_user_model().objects.create_user("bench-tcp")
print(ApiToken.issue(user, name="bench")[1])
"""


def free_port_range(width: int) -> str:
    """ "a-b": `width` consecutive loopback ports that are free right now."""
    for _ in range(200):
        low = random.randrange(RANGE_LOW, RANGE_HIGH - width)
        if all(port_free(port) for port in range(low, low + width)):
            return f"{low}-{low + width - 1}"
    raise StartError(f"no {width} free consecutive ports in {RANGE_LOW}-{RANGE_HIGH}")


def port_free(port: int) -> bool:
    """Whether nothing holds loopback `port` now: binding it ourselves says."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _token(bench: Bench, template: Path) -> str:
    """A user's token in `template` (TCP tunnels need an account by default)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{template}", "SECRET_KEY": bench.secret_key}
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", _USER],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT_S,
    )
    return done.stdout.split()[-1]


def run(bench: Bench, tmp: Path, template: Path) -> dict[str, Any]:
    """Start the TCP app, a relay with RELAY_TCP_PORTS and `lt tcp`; measure; summarise."""
    token = _token(bench, template)  # before the relay copies the template
    app = bench.children.start([PYTHON, "-u", "-m", "bench.tcp_app"], name="tcp app")
    app_port = int(app.wait_for_line(r"tcp app listening on 127\.0\.0\.1:(\d+)", 10).group(1))
    relay = bench.start_relay(tmp, template, RELAY_TCP_PORTS=free_port_range(10))
    host = f"http://localhost:{relay.port}"
    args = [str(OURS_LT), "tcp", "--port", str(app_port), "--host", host, "--token", token]
    env = client_env(PYTHONUNBUFFERED="1")
    lt = bench.children.start(args, env, name="lt tcp")
    try:
        match = lt.wait_for_line(r"your url is: tcp://[^\s:]+:(\d+)", START_TIMEOUT_S)
    except StartError as exc:
        bench.say(f"tcp: UNAVAILABLE: {exc}")
        return {"name": "TCP tunnel", "skipped": str(exc).splitlines()[0][:300], "rows": []}
    ports = {"direct": app_port, "tcp": int(match.group(1))}
    return measure(bench, ports)


def measure(bench: Bench, ports: dict[str, int]) -> dict[str, Any]:
    size = bench.options.transfer_bytes
    runs: dict[str, dict[str, list[TransferResult | str]]] = {}
    for round_no in range(bench.options.rounds):
        for kind, move in KINDS:
            for connections in CONNECTIONS:
                row = f"{kind} x{connections}"
                order = TARGETS if round_no % 2 == 0 else TARGETS[::-1]
                for target in order:
                    try:
                        result: TransferResult | str = tcp_transfer.parallel(
                            move, ports[target], size // connections, connections
                        )
                    except (TransferError, OSError) as exc:
                        result = f"{type(exc).__name__}: {exc}"
                    runs.setdefault(row, {}).setdefault(target, []).append(result)
                    shown = (
                        result
                        if isinstance(result, str)
                        else f"{result.mbps:8,.0f} MB/s sha256 "
                        + ("ok" if result.sha256_ok else "BAD")
                    )
                    bench.say(f"round {round_no + 1} tcp {row:<13} {target:<6} {shown}")
    return summary(runs, size)


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(value, 1)


def summary(runs: dict[str, dict[str, list[TransferResult | str]]], size: int) -> dict[str, Any]:
    rows = []
    for name, targets in runs.items():
        row: dict[str, Any] = {"name": name}
        for target in TARGETS:
            done = [r for r in targets.get(target, []) if isinstance(r, TransferResult)]
            failed = [r for r in targets.get(target, []) if isinstance(r, str)]
            row[f"{target}_mbps"] = _median([r.mbps for r in done])
            row[f"{target}_sha256_ok"] = all(r.sha256_ok for r in done) if done else None
            row[f"{target}_errors"] = len(failed) + sum(not r.sha256_ok for r in done)
            if failed:
                row[f"{target}_failures"] = failed
        direct, tcp = row["direct_mbps"], row["tcp_mbps"]
        row["tcp_ratio"] = round(tcp / direct, 3) if direct and tcp else None
        rows.append(row)
    return {"name": "TCP tunnel", "bytes_per_row": size, "skipped": None, "rows": rows}


def table_lines(tcp: dict[str, Any]) -> list[str]:
    """The TCP scenario as Markdown: MB/s direct and through the tunnel, and the ratio."""
    if tcp.get("skipped"):
        return ["", f"TCP tunnel: not measured ({tcp['skipped']})"]
    mib = tcp["bytes_per_row"] / (1 << 20)
    lines = [
        "",
        f"TCP tunnel ({mib:g} MiB per row, MB/s, sha256 checked):",
        "",
        "| transfer | direct | lt tcp | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in tcp["rows"]:
        ratio = "n/a" if row["tcp_ratio"] is None else f"{row['tcp_ratio']:.3f}"
        cells = [row["name"], _num(row["direct_mbps"]), _num(row["tcp_mbps"]), ratio]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"
