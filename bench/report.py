"""Medians, ratios to direct and to the reference, and `bench-results.json` (the printed
tables are bench/table.py's)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.reference import Install
from bench.transfer import TransferResult
from bench.wrk import WrkResult

if TYPE_CHECKING:
    from bench.scenarios import Options
    from bench.targets import Target

# direct: the app itself. On the plain relay: ours (our lt, its pool upgraded on the relay's
# port), ours_raw (our lt --raw-pool) and npm (raw pool ports). On the relay serving TLS itself,
# visitors over https: tls_raw (our lt --raw-pool: pool in clear) and tls_pool (our lt, its
# pool upgraded inside TLS).
# ours_rules: our lt with visitor rules (basic auth, CIDR allow and deny) on the plain relay.
# ours_inspected, ours_uninspected: our lt on the plain relay with the tokens of two users
# whose plans differ only in the request inspector (on, off).
# reference: the localtunnel reference server (bench/reference.py) with the npm lt.
LABELS = (
    "direct",
    "ours",
    "ours_raw",
    "npm",
    "ours_rules",
    "ours_inspected",
    "ours_uninspected",
    "tls_raw",
    "tls_pool",
    "reference",
)
TUNNELS = LABELS[1:]  # the targets through a relay
# (name, target, baseline): how much slower the target is than its baseline, same run.
COSTS = (
    ("upgrade_cost", "ours", "ours_raw"),  # the upgraded pool vs a raw one, both in clear
    ("pool_tls_cost", "tls_pool", "tls_raw"),  # the pool inside TLS vs in clear, same visitors
    ("access_cost", "ours_rules", "ours"),  # basic auth + CIDR checked vs no such rules
    ("inspect_cost", "ours_inspected", "ours_uninspected"),  # the inspector's captures vs none kept
)
# (key, target): the target against the reference server in the same run; > 1 on req/s (or
# MB/s) is faster than the reference, < 1 on p99 is a shorter tail.
VERSUS_REFERENCE = (("ours_vs_reference", "ours"), ("npm_vs_reference", "npm"))
# The processes whose CPU per request is read, in the order they are printed.
ROLES = ("relay", "reference", "client", "app", "total")
CAVEAT = (
    "Loopback on one small machine: wrk, the relay, the tunnel client and the local app "
    "share the same {cores} cores, so every figure includes their contention for CPU. "
    "Read the ratios to direct, not the absolute numbers, and expect a few percent of "
    "noise between runs; this is not a capacity claim for a real deployment."
)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _ratio(value: float | None, direct: float | None) -> float | None:
    if value is None or not direct:
        return None
    return round(value / direct, 3)


def _unavailable(entry: dict[str, Any], targets: list[Target]) -> None:
    for target in targets:
        if not target.available:
            entry[f"{target.label}_unavailable"] = target.reason


def _costs(entry: dict[str, Any], key: str) -> None:
    """Each of COSTS: 1 - target / baseline on `key` (0.10: 10% fewer requests or bytes per
    second than the baseline in the same run); None when either did not run."""
    for name, target, baseline in COSTS:
        slow, base = entry.get(f"{target}_{key}"), entry.get(f"{baseline}_{key}")
        entry[name] = None if not base or slow is None else round(1 - slow / base, 3)


def _versus_reference(entry: dict[str, Any], key: str) -> None:
    """Each of VERSUS_REFERENCE: the target's `key` over the reference's, and the same for
    p99 (`<name>_p99`); None when either did not run."""
    for name, label in VERSUS_REFERENCE:
        entry[name] = _ratio(entry.get(f"{label}_{key}"), entry.get(f"reference_{key}"))
        entry[f"{name}_p99"] = _ratio(entry.get(f"{label}_p99_ms"), entry.get("reference_p99_ms"))


def cpu_medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per role, the median over runs of its CPU microseconds per request."""
    roles = [role for role in ROLES if any(role in run for run in runs)]
    return {role: _median([run[role] for run in runs if role in run]) or 0.0 for role in roles}


def wrk_scenario(
    name: str,
    unit: str,
    runs: dict[str, list[WrkResult]],
    targets: list[Target],
    cpu_us: dict[str, list[dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """One wrk scenario: medians over rounds per target; ratios on req/s (= on MB/s), to
    direct and to the reference; the CPU per request (user + system, microseconds) of each
    process a request crosses, and of the server alone as `<label>_relay_cpu_us`."""
    entry: dict[str, Any] = {"name": name, "unit": unit, "tool": "wrk"}
    for label in LABELS:
        results = runs.get(label, [])
        entry[f"{label}_rps"] = _median([r.rps for r in results])
        entry[f"{label}_mbps"] = _median([r.mbps for r in results])
        entry[f"{label}_p50_ms"] = _median([r.p50_ms for r in results])
        entry[f"{label}_p99_ms"] = _median([r.p99_ms for r in results])
        entry[f"{label}_p999_ms"] = _median([r.p999_ms for r in results])
        entry[f"{label}_errors"] = sum(r.errors for r in results) if results else None
        entry[f"{label}_rounds_rps"] = [round(r.rps, 1) for r in results]
        used = cpu_medians((cpu_us or {}).get(label, []))
        entry[f"{label}_cpu_us"] = used or None
    for label in TUNNELS:
        entry[f"{label}_ratio"] = _ratio(entry[f"{label}_rps"], entry["direct_rps"])
        used = entry[f"{label}_cpu_us"] or {}
        entry[f"{label}_relay_cpu_us"] = used.get("relay", used.get("reference"))
    _costs(entry, "rps")
    _versus_reference(entry, "rps")
    _unavailable(entry, targets)
    return entry


def transfer_scenario(
    name: str, runs: dict[str, list[TransferResult | str]], targets: list[Target]
) -> dict[str, Any]:
    """One big transfer per round and target. rps is transfers per second, p50/p99 are
    the median and the slowest transfer time; the ratio is on MB/s."""
    entry: dict[str, Any] = {"name": name, "unit": "MB/s", "tool": "python socket, sha256"}
    for label in LABELS:
        done = [r for r in runs.get(label, []) if isinstance(r, TransferResult)]
        failed = [r for r in runs.get(label, []) if isinstance(r, str)]
        entry[f"{label}_mbps"] = _median([r.mbps for r in done])
        entry[f"{label}_rps"] = _median([1 / r.seconds for r in done])
        entry[f"{label}_p50_ms"] = _median([r.seconds * 1000 for r in done])
        entry[f"{label}_p99_ms"] = round(max(r.seconds for r in done) * 1000, 3) if done else None
        entry[f"{label}_sha256_ok"] = all(r.sha256_ok for r in done) if done else None
        entry[f"{label}_errors"] = len(failed) + sum(not r.sha256_ok for r in done)
        if failed:
            entry[f"{label}_failures"] = failed
        entry[f"{label}_rounds_mbps"] = [round(r.mbps, 1) for r in done]
    for label in TUNNELS:
        entry[f"{label}_ratio"] = _ratio(entry[f"{label}_mbps"], entry["direct_mbps"])
    _costs(entry, "mbps")
    _versus_reference(entry, "mbps")
    _unavailable(entry, targets)
    return entry


def scale_summary(
    count: int,
    ready: dict[str, Any],
    done: dict[str, Any],
    before: dict[str, int],
    held: dict[str, int],
    after: dict[str, int],
    settled: bool,
) -> dict[str, Any]:
    grown = held["rss_kb"] - before["rss_kb"]
    left = after["rss_kb"] - before["rss_kb"]
    return {
        "tunnels": count,
        "idle_sockets": ready["sockets"],
        "max_conn_count": ready["max_conn_count"],
        "idle_tunnel_rss_kb": round(grown / count, 2),
        "tunnels_per_s": round(count / ready["register_s"], 1),
        "register_s": round(ready["register_s"], 3),
        "sockets_connect_s": round(ready["connect_s"], 3),
        "deleted": done["deleted"],
        "teardown_s": round(done["teardown_s"], 3),
        "rss_kb": {"before": before["rss_kb"], "held": held["rss_kb"], "after": after["rss_kb"]},
        "fds": {"before": before["fds"], "held": held["fds"], "after": after["fds"]},
        "fds_returned": settled and after["fds"] <= before["fds"] + 5,
        # "Near": at most a tenth of what the tunnels took, or 2 MiB, is still held.
        "rss_returned": left <= max(2048, grown / 10),
    }


def machine(load: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine, and `load` (the load averages before and after the run)."""
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cores": os.cpu_count(),
        "model": model or platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _version(["wrk", "--version"]),
        "node": _version(["node", "--version"]),
        # 1, 5 and 15 minute load averages: a busy machine's figures are not comparable.
        "load_before": list((load or {}).get("load_before", ())),
        "load_after": list((load or {}).get("load_after", ())),
    }


def _version(args: list[str]) -> str:
    if shutil.which(args[0]) is None:
        return "not installed"
    done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""
    )


def build(
    scenarios: list[dict[str, Any]],
    scale: dict[str, Any],
    targets: list[Target],
    options: Options,
    two_node: dict[str, Any] | None = None,
    tcp: dict[str, Any] | None = None,
    installed: Install | None = None,
    load: dict[str, Any] | None = None,
    loaded_at_once: dict[str, Any] | None = None,
    profiled: dict[str, Any] | None = None,
    websocket: dict[str, Any] | None = None,
) -> dict[str, Any]:
    box = machine(load)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": box,
        "caveat": CAVEAT.format(cores=box["nproc"]),
        "quick": options.quick,
        "rounds": options.rounds,
        "round_duration_s": options.duration_s,
        "app": {
            "server": "bench.app (Python asyncio Protocol, HTTP/1.1 keep-alive, one process)",
            "work_us_per_request": options.app_work_us,
        },
        "wrk": "1 thread, --timeout 5s, loopback",
        "targets": {
            t.label: {
                "command": t.command,
                "available": t.available,
                "reason": t.reason,
                "processes": sorted(t.pids),
            }
            for t in targets
        },
        # The localtunnel reference server: what was installed, or why it was not.
        "reference": (installed or Install(reason="not looked for")).as_json(),
        "scenarios": scenarios,
        "idle_tunnel_rss_kb": scale["idle_tunnel_rss_kb"],
        "tunnels_per_s": scale["tunnels_per_s"],
        "scale": scale,
        # Owner vs non-owner node (bench/two_nodes.py); None when it did not run.
        "two_node_ratio": (two_node or {}).get("two_node_ratio"),
        "two_node": two_node,
        # MB/s through a TCP tunnel vs direct at 1 and 10 connections (bench/tcp_scenario.py).
        "tcp": tcp,
        # Many tunnels on one relay, each loaded by its own wrk at the same time (bench/loaded.py).
        "loaded_at_once": loaded_at_once,
        # One WebSocket's echo round trips through each plain-http target (bench/ws_echo.py).
        "websocket_echo": websocket,
        # --profile: py-spy's speedscope files of the relay and our lt; None without it.
        "profile": profiled,
    }


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")
