"""The scale scenario, on a fresh relay of its own: many tunnels registered with full idle
pools (bench/holder.py), what they cost the relay (RSS per idle tunnel, registrations per
second, descriptors), the p50/p99 of one measured tunnel alone and then beside them, and
whether the teardown gives it all back."""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import report
from bench.procs import (
    StartError,
    client_env,
    cpu_snapshot,
    cpu_us_per_request,
    fd_count,
    rss_kb,
    wait_until,
)
from bench.targets import HTTP_TIMEOUT_S, Relay, Target
from bench.wrk import WrkResult, run_wrk

if TYPE_CHECKING:
    from bench.scenarios import Bench

PYTHON = sys.executable
HOLDER_READY_TIMEOUT_S = 300.0
SETTLE_TIMEOUT_S = 30.0
MEASURED_CONNECTIONS = 10  # the measured tunnel's load: 1 KiB x10, as the throughput rounds
WARM_UP_TUNNELS = 20


def run(bench: Bench, tmp: Path, template: Path, command: list[str]) -> dict[str, Any]:
    """Register `bench.options.tunnels` idle tunnels beside one measured tunnel (`command`,
    our lt) on a fresh relay; memory, descriptors and the measured tunnel's latency."""
    relay = bench.start_relay(tmp, template, RELAY_GRACE_S="120")
    pid = relay.child.pid
    count = bench.options.tunnels
    warm_up(relay)  # first-use allocations are not per-tunnel costs
    app_port = bench.start_app()
    mark = bench.children.mark()
    measured = bench.start_tunnel("measured", command, relay, app_port)
    if not measured.available:
        raise StartError(f"the scale scenario's measured tunnel: {measured.reason}")
    alone = _load(bench, measured, "alone")
    before = {"rss_kb": rss_kb(pid), "fds": fd_count(pid)}
    holder = bench.children.start(
        [PYTHON, "-m", "bench.holder", "--port", str(relay.port), "--tunnels", str(count)],
        client_env(),
        name="holder",
        stdin=subprocess.PIPE,
    )
    ready = json.loads(
        holder.wait_for_line(r"^HOLDER (\{\"event\": \"ready\".*)$", HOLDER_READY_TIMEOUT_S).group(
            1
        )
    )
    sockets = ready["sockets"]
    # The measured tunnel's own sockets are left out: one of its pool sockets may be closing
    # and coming back after the load at any moment.
    wait_until(
        lambda: relay.status()["sockets"] - relay.sockets(measured.name) == sockets,
        SETTLE_TIMEOUT_S,
        f"the relay to count the holder's {sockets} pool sockets",
    )
    held = {"rss_kb": rss_kb(pid), "fds": fd_count(pid)}
    bench.say(f"scale: {count} tunnels, {sockets} idle sockets; before {before}, held {held}")
    beside = _load(bench, measured, f"beside {count} idle tunnels")
    holder.send_line("teardown")
    done = json.loads(
        holder.wait_for_line(r"^HOLDER (\{\"event\": \"done\".*)$", HOLDER_READY_TIMEOUT_S).group(1)
    )
    bench.children.stop_since(mark)  # the measured client; it deletes its tunnel
    settled = True
    try:
        wait_until(lambda: relay.status()["tunnels"] == 0, SETTLE_TIMEOUT_S, "no tunnels")
        wait_until(
            lambda: fd_count(pid) <= before["fds"] + 5,
            SETTLE_TIMEOUT_S,
            "descriptors back to the baseline",
        )
    except TimeoutError:
        settled = False
    after = {"rss_kb": rss_kb(pid), "fds": fd_count(pid)}
    bench.say(f"scale: after teardown {after}")
    summary = report.scale_summary(count, ready, done, before, held, after, settled)
    summary["measured"] = {
        "connections": MEASURED_CONNECTIONS,
        "alone": _latency(alone),
        "beside_idle": _latency(beside),
    }
    return summary


def _load(
    bench: Bench, target: Target, when: str
) -> tuple[list[WrkResult], list[dict[str, float]]]:
    """`rounds` wrk runs on the measured tunnel: their results, and the CPU per request of
    each of its processes in each."""
    opts = bench.options
    results, used = [], []
    for round_no in range(opts.rounds):
        before = cpu_snapshot(target.pids)
        result = run_wrk(target.url("/1k"), target.host, MEASURED_CONNECTIONS, opts.duration_s)
        used.append(cpu_us_per_request(before, cpu_snapshot(target.pids), result.requests))
        results.append(result)
        shown = " ".join(f"{role} {us:,.0f}" for role, us in used[-1].items())
        bench.say(
            f"round {round_no + 1}/{opts.rounds} scale: measured tunnel {when}: "
            f"{result.rps:,.0f} req/s p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms; "
            f"CPU us/req {shown}" + (f" errors {result.errors}" if result.errors else "")
        )
    return results, used


def _latency(runs: tuple[list[WrkResult], list[dict[str, float]]]) -> dict[str, Any]:
    results, used = runs

    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 3) if values else None

    return {
        "rps": median([r.rps for r in results]),
        "p50_ms": median([r.p50_ms for r in results]),
        "p99_ms": median([r.p99_ms for r in results]),
        "p999_ms": median([r.p999_ms for r in results]),
        "errors": sum(r.errors for r in results),
        "cpu_us": report.cpu_medians(used),
    }


def warm_up(relay: Relay, count: int = WARM_UP_TUNNELS) -> None:
    """Register and delete a few tunnels, so code paths and caches are warm."""
    for _ in range(count):
        code, body = relay.get_json("/?new")
        if code != 200:
            raise StartError(f"warm-up registration answered {code}: {body}")
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("DELETE", f"/api/tunnels/{body['id']}")
            conn.getresponse().read()
        finally:
            conn.close()
    wait_until(lambda: relay.status()["tunnels"] == 0, SETTLE_TIMEOUT_S, "warm-up teardown")
