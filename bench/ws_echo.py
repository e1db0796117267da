"""WebSocket echo latency: one WebSocket to the app's `/ws` (bench/app.py) through each
plain-http target, `ECHOES` messages of `MESSAGE_BYTES` sent one at a time, each timed from
send to its echo. The median and p99 of those round trips, and echoes per second. One such
run per target and round; medians over rounds."""

from __future__ import annotations

import socket
import statistics
import time
from typing import TYPE_CHECKING, Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

if TYPE_CHECKING:
    from bench.scenarios import Bench
    from bench.targets import Target

ECHOES = 2000
WARM_UP = 50
MESSAGE_BYTES = 1024
IO_TIMEOUT_S = 10.0
NAME = "WebSocket echo 1KiB"


def _pair(header: str) -> tuple[str, str]:
    name, _, value = header.partition(": ")
    return name, value


def echo_run(target: Target, echoes: int = ECHOES) -> dict[str, float]:
    """One WebSocket through `target`: round-trip times of `echoes` messages, in ms."""
    message = bytes(i % 251 for i in range(MESSAGE_BYTES))
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=IO_TIMEOUT_S)
    with connect(
        f"ws://{target.host}/ws",
        sock=sock,
        open_timeout=IO_TIMEOUT_S,
        close_timeout=IO_TIMEOUT_S,
        additional_headers=[_pair(header) for header in target.headers],
        max_size=2 * MESSAGE_BYTES,
        compression=None,
    ) as ws:
        for _ in range(WARM_UP):
            ws.send(message)
            ws.recv(timeout=IO_TIMEOUT_S)
        times = []
        started = time.perf_counter()
        for _ in range(echoes):
            sent = time.perf_counter()
            ws.send(message)
            if ws.recv(timeout=IO_TIMEOUT_S) != message:
                raise ValueError("the echo differs from the message")
            times.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - started
    times.sort()
    return {
        "echoes_per_s": echoes / elapsed,
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
    }


def run(bench: Bench, targets: list[Target]) -> dict[str, Any]:
    """`rounds` runs on each live plain-http target, the order rotated each round."""
    live = [t for t in targets if t.available and t.scheme == "http"]
    runs: dict[str, list[dict[str, float]]] = {t.label: [] for t in live}
    errors: dict[str, str] = {}
    for round_no in range(bench.options.rounds):
        shift = round_no % len(live) if live else 0
        for target in live[shift:] + live[:shift]:
            try:
                result = echo_run(target, ECHOES if not bench.options.quick else 200)
            except (OSError, WebSocketException, ValueError, TimeoutError) as exc:
                errors[target.label] = f"{type(exc).__name__}: {exc}"
                bench.say(f"round {round_no + 1} {NAME} {target.label}: {errors[target.label]}")
                continue
            runs[target.label].append(result)
            bench.say(
                f"round {round_no + 1} {NAME} {target.label:<8} "
                f"{result['echoes_per_s']:8,.0f} echoes/s p50 {result['p50_ms']:.3f} ms "
                f"p99 {result['p99_ms']:.3f} ms"
            )
    medians = {
        label: {key: round(statistics.median(r[key] for r in got), 3) for key in got[0]}
        for label, got in runs.items()
        if got
    }
    return {
        "name": NAME,
        "echoes": ECHOES,
        "message_bytes": MESSAGE_BYTES,
        "targets": medians,
        "errors": errors,
    }


def table_line(entry: dict[str, Any]) -> str:
    shown = "; ".join(
        f"{label} p50 {r['p50_ms']:.3f} / p99 {r['p99_ms']:.3f} ms ({r['echoes_per_s']:,.0f}/s)"
        for label, r in entry["targets"].items()
    )
    return f"{entry['name']} (one WebSocket, one message at a time): {shown}."
