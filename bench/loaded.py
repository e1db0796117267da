"""Many tunnels loaded at once: N tunnels on one relay (our `lt` each), each driven by a wrk
of its own (-t1 -c10, 1 KiB) at the same time. Total req/s over the tunnels, the median over
tunnels of each latency percentile, the CPU per request of the relay, of the clients
together, of the app and of the wrks, how busy the cores were and how long the relay waited
for one. Two runs per round, at equal weights and with the relay weighted (RELAY_NICE);
medians over rounds of each."""

from __future__ import annotations

import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bench.procs import (
    busy_share,
    cpu_snapshot,
    cpu_us_per_request,
    machine_times,
    restore_weight,
    run_queue_ns,
    set_weight,
)
from bench.wrk import WrkResult, run_wrk

if TYPE_CHECKING:
    from bench.scenarios import Bench
    from bench.targets import Relay, Target

CONNECTIONS = 10  # per tunnel, as in the 1 KiB x10 scenario
PATH = "/1k"
# The relay's weight in one of the two runs of each round. Twenty clients, the app and the
# relay are each a session of their own, and the twenty wrks share the harness's: 23 sessions
# on two cores, which the kernel's autogroups weigh alike. So at equal weights the relay,
# which serves every tunnel, is one claim among 23, preempted by the clients it wakes
# (`relay_run_queue_share`: the share of the run it waited for a core) while the cores are
# not all busy. At nice -10 its session weighs 9,548 to the others' 1,024: it runs when it
# has work. The cores are then nearly all busy, so that figure is bounded by the machine: a
# lower bound on what the relay carries, not its limit. Both figures are reported.
RELAY_NICE = -10
NEEDS = "a negative nice needs root (CAP_SYS_NICE) or an RLIMIT_NICE that allows it"


def run(bench: Bench, relay: Relay, app_port: int, command: list[str]) -> dict[str, Any]:
    """Start `bench.options.loaded_tunnels` clients (`command`) on `relay`, load them all at
    once for `rounds` rounds of two runs each, then stop them."""
    opts = bench.options
    count = opts.loaded_tunnels
    mark = bench.children.mark()
    rounds: list[dict[str, Any]] = []
    weighted: list[dict[str, Any]] = []
    unweighted = ""  # why there is no weighted run
    try:
        launches = [
            bench.launch_tunnel(f"loaded_{index}", command, relay, app_port)
            for index in range(count)
        ]
        targets = [bench.await_tunnel(launch, check=False) for launch in launches]
        live = [t for t in targets if t.available]
        if not live:
            unweighted = "no tunnel came up"
        elif opts.warmup_s:
            _one_run(live, opts.warmup_s)  # the first run after start-up is not measured
        for round_no in range(opts.rounds if live else 0):
            # The order alternates, so a slow moment of the machine does not land on one
            # kind of run only.
            for relay_weighted in (False, True) if round_no % 2 == 0 else (True, False):
                how = f", relay at nice {RELAY_NICE}" if relay_weighted else ""
                if not relay_weighted:
                    rounds.append(_one_run(live, opts.duration_s))
                    shown = rounds[-1]
                elif unweighted:
                    continue
                else:
                    outcome = _weighted_run(live, relay.child.pid, opts.duration_s)
                    if isinstance(outcome, str):
                        unweighted = outcome
                        bench.say(f"loaded at once: {outcome}")
                        continue
                    weighted.append(shown := outcome)
                bench.say(
                    f"round {round_no + 1}/{opts.rounds} {count} tunnels loaded at once{how}: "
                    f"{shown['total_rps']:,.0f} req/s in all, median p99 "
                    f"{shown['p99_ms_median']:.2f} ms, errors {shown['errors']}"
                    f"{_kinds_shown(shown['error_kinds'])}, cores busy "
                    f"{_percent(shown['machine_busy'])}, relay waiting "
                    f"{_percent(shown['relay_run_queue_share'])}"
                )
    finally:
        bench.children.stop_since(mark)
    result = summary(count, live, targets, rounds)
    result["relay_weighted"] = {
        "relay_nice": RELAY_NICE,
        **(summary(count, live, targets, weighted) if weighted else {}),
        "weight_unavailable": unweighted or None,
    }
    return result


def _weighted_run(live: list[Target], relay_pid: int, duration_s: int) -> dict[str, Any] | str:
    """`_one_run` with the relay weighted at RELAY_NICE (procs.set_weight), its weight given
    back after; why not, when it could not be weighted. Giving the weight back needs no
    privilege: if it fails, the run fails, rather than later runs being labelled wrongly."""
    try:
        weight = set_weight(relay_pid, RELAY_NICE)
    except OSError as exc:
        return f"the relay could not be weighted ({NEEDS}): {exc}"
    try:
        return _one_run(live, duration_s)
    finally:
        restore_weight(weight)


def _one_run(live: list[Target], duration_s: int) -> dict[str, Any]:
    pids = {"relay": live[0].pids["relay"], "app": live[0].pids["app"]}
    clients = {f"client {i}": t.pids["client"] for i, t in enumerate(live)}
    before = cpu_snapshot({**pids, **clients})
    wrk_before, machine_before = _children_cpu_s(), machine_times()
    waited_before, started = run_queue_ns(pids["relay"]), time.monotonic()
    with ThreadPoolExecutor(max_workers=len(live)) as pool:
        results: list[WrkResult] = list(
            pool.map(lambda t: run_wrk(t.url(PATH), t.host, CONNECTIONS, duration_s), live)
        )
    # The wrks are the only children reaped in this window (the clients still run).
    wrk_s, machine_after = _children_cpu_s() - wrk_before, machine_times()
    waited_ns, wall_s = run_queue_ns(pids["relay"]) - waited_before, time.monotonic() - started
    after = cpu_snapshot({**pids, **clients})
    requests = sum(r.requests for r in results)
    used = cpu_us_per_request(before, after, requests)
    per_role = {role: used[role] for role in pids if role in used}
    per_role["client"] = sum(v for k, v in used.items() if k.startswith("client "))
    per_role["total"] = used.get("total", 0.0)
    # The load generators share the machine: their CPU, and how busy the cores were, say
    # whether a figure is the tunnel's limit or the machine's.
    per_role["wrk"] = wrk_s / requests * 1e6 if requests else 0.0
    return {
        "total_rps": sum(r.rps for r in results),
        "p50_ms_median": statistics.median(r.p50_ms for r in results),
        "p99_ms_median": statistics.median(r.p99_ms for r in results),
        "p999_ms_median": statistics.median(r.p999_ms for r in results),
        "p99_ms_max": max(r.p99_ms for r in results),
        "errors": sum(r.errors for r in results),
        "error_kinds": _kinds(results),
        "requests": requests,
        "cpu_us": per_role,
        "machine_busy": busy_share(machine_before, machine_after),
        "relay_run_queue_share": round(waited_ns / 1e9 / wall_s, 3) if wall_s > 0 else None,
    }


def _children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _kinds(results: list[WrkResult]) -> dict[str, int]:
    """The errors of all the wrk runs by kind (wrk.ERROR_KINDS), the non-zero ones."""
    total: dict[str, int] = {}
    for result in results:
        for kind, count in result.error_kinds.items():
            total[kind] = total.get(kind, 0) + count
    return total


def summary(
    count: int, live: list[Target], targets: list[Target], rounds: list[dict[str, Any]]
) -> dict[str, Any]:
    def median(key: str) -> float | None:
        values = [r[key] for r in rounds if r[key] is not None]
        return round(statistics.median(values), 3) if values else None

    roles = ("relay", "client", "app", "total", "wrk")
    return {
        "tunnels": count,
        "loaded": len(live),
        "connections_per_tunnel": CONNECTIONS,
        "total_rps": median("total_rps"),
        "p50_ms_median": median("p50_ms_median"),
        "p99_ms_median": median("p99_ms_median"),
        "p999_ms_median": median("p999_ms_median"),
        "p99_ms_max": median("p99_ms_max"),
        "errors": sum(r["errors"] for r in rounds),
        "error_kinds": {
            kind: sum(r["error_kinds"].get(kind, 0) for r in rounds)
            for kind in sorted({k for r in rounds for k in r["error_kinds"]})
        },
        "rounds_total_rps": [round(r["total_rps"], 1) for r in rounds],
        # The clients' figure is all of them together: their CPU over all requests.
        "cpu_us": {
            role: round(statistics.median(r["cpu_us"].get(role, 0.0) for r in rounds), 1)
            for role in roles
        }
        if rounds
        else None,
        "machine_busy": median("machine_busy"),
        "relay_run_queue_share": median("relay_run_queue_share"),
        "unavailable": sorted({t.reason for t in targets if not t.available}),
    }


def table_line(entry: dict[str, Any]) -> str:
    if not entry["loaded"]:
        return f"Loaded at once: no tunnel came up ({'; '.join(entry['unavailable'])})."
    line = (
        f"{entry['loaded']} tunnels loaded at once (wrk -t1 -c{entry['connections_per_tunnel']} "
        f"each, 1 KiB): {_figures(entry)}"
    )
    weighted = entry.get("relay_weighted") or {}
    if weighted.get("total_rps") is not None:
        line += f" With the relay at nice {weighted['relay_nice']}: {_figures(weighted)}"
    elif weighted.get("weight_unavailable"):
        line += f" Not measured with the relay weighted: {weighted['weight_unavailable']}."
    return line


def _figures(entry: dict[str, Any]) -> str:
    cpu = entry["cpu_us"] or {}
    return (
        f"{entry['total_rps']:,.0f} req/s in all; median over tunnels of p50 "
        f"{entry['p50_ms_median']:.2f} / p99 {entry['p99_ms_median']:.2f} / p99.9 "
        f"{entry['p999_ms_median']:.2f} ms; CPU us/req relay {cpu.get('relay', 0):,.0f}, "
        f"clients {cpu.get('client', 0):,.0f}, app {cpu.get('app', 0):,.0f}, "
        f"the wrks {cpu.get('wrk', 0):,.0f}; cores busy {_percent(entry.get('machine_busy'))}, "
        f"relay waiting for a core {_percent(entry.get('relay_run_queue_share'))}; "
        f"errors {entry['errors']}{_kinds_shown(entry.get('error_kinds') or {})}."
    )


def _kinds_shown(kinds: dict[str, int]) -> str:
    """` (read 18, timeout 2)`: wrk's kinds of the errors, or nothing without any."""
    return f" ({', '.join(f'{k} {v}' for k, v in kinds.items())})" if kinds else ""


def _percent(share: float | None) -> str:
    return "?" if share is None else f"{share:.0%}"
