"""The tables `benchrelay` prints from a run's results (bench/report.py builds them)."""

from __future__ import annotations

from typing import Any

from bench import loaded, tcp_scenario, two_nodes, ws_echo
from bench.report import COSTS, LABELS, TUNNELS, VERSUS_REFERENCE


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _lat(entry: dict[str, Any], label: str) -> str:
    p50, p99 = entry.get(f"{label}_p50_ms"), entry.get(f"{label}_p99_ms")
    return "n/a" if p50 is None else f"{p50:.2f} / {p99:.2f}"


def _cost(entry: dict[str, Any], name: str) -> str:
    value = entry.get(name)
    return "n/a" if value is None else f"{value:.1%}"


def _versus(entry: dict[str, Any], name: str) -> str:
    speed, tail = entry.get(name), entry.get(f"{name}_p99")
    if speed is None:
        return "n/a"
    return f"{speed:.2f}x" + (f" (p99 {tail:.2f}x)" if tail is not None else "")


def latency_cpu_table(results: dict[str, Any]) -> list[str]:
    """Per wrk scenario and target: p50 / p99 / p99.9 and the CPU microseconds per request of
    each process (the server: our relay or the reference; the client; the app; their sum)."""
    head = ["scenario", "target", "p50 ms", "p99 ms", "p99.9 ms"]
    head += ["server us/req", "client us/req", "app us/req", "total us/req"]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for s in results["scenarios"]:
        if s["tool"] != "wrk":
            continue
        for label in LABELS:
            if s.get(f"{label}_p50_ms") is None:
                continue
            used = s.get(f"{label}_cpu_us") or {}
            server = used.get("relay", used.get("reference"))
            cells = [s["name"], label]
            cells += [_num(s.get(f"{label}_{key}_ms"), 2) for key in ("p50", "p99", "p999")]
            cells += [_num(value) for value in (server, used.get("client"), used.get("app"))]
            cells.append(_num(used.get("total")))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def table(results: dict[str, Any]) -> str:
    """A Markdown table of the scenarios (each tunnelled figure with its ratio to direct and,
    for wrk scenarios, the relay's CPU per request in microseconds), then the costs of the
    upgraded pool, of TLS on the pool, of visitor rules and of the request inspector, then
    the scale figures."""
    head = ["scenario", "unit", "direct"]
    head += [label.replace("_", " ") for label in TUNNELS]
    head += ["upgrade cost", "pool TLS cost", "access cost", "inspect cost"]
    head += ["ours / reference", "npm / reference"]
    head += ["p50 / p99 ms direct"]
    head += [label.replace("_", " ") for label in TUNNELS]
    lines = [
        "| " + " | ".join(head) + " |",
        "| --- | --- |" + " ---: |" * (len(head) - 2),
    ]
    for s in results["scenarios"]:
        key = "rps" if s["unit"] == "req/s" else "mbps"
        cells = [s["name"], s["unit"], _num(s[f"direct_{key}"])]
        for label in TUNNELS:
            ratio = s.get(f"{label}_ratio")
            shown = _num(s[f"{label}_{key}"])
            if ratio is not None:
                shown += f" ({ratio:.3f}"
                cpu = s.get(f"{label}_relay_cpu_us")
                shown += f", {cpu:,.0f} us)" if cpu is not None else ")"
            cells.append(shown)
        cells += [_cost(s, name) for name, _, _ in COSTS]
        cells += [_versus(s, name) for name, _ in VERSUS_REFERENCE]
        cells.append(_lat(s, "direct"))
        cells += [_lat(s, label) for label in TUNNELS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Latency and CPU per request (user + system from /proc, medians of rounds):", ""]
    lines += latency_cpu_table(results)
    scale = results["scale"]
    rss, fds = scale["rss_kb"], scale["fds"]
    lines += [
        "",
        f"Scale: {scale['tunnels']:,} tunnels x {scale['max_conn_count']} idle sockets: "
        f"{scale['idle_tunnel_rss_kb']:.1f} KB of relay RSS per idle tunnel, "
        f"{scale['tunnels_per_s']:,.0f} registrations/s.",
        f"Teardown: RSS {rss['before']:,} -> {rss['held']:,} -> {rss['after']:,} KB "
        f"({'near' if scale['rss_returned'] else 'NOT near'} baseline); "
        f"descriptors {fds['before']:,} -> {fds['held']:,} -> {fds['after']:,} "
        f"({'back to' if scale['fds_returned'] else 'NOT back to'} baseline).",
    ]
    if scale.get("measured"):
        lines.append(_measured_line(scale))
    if results.get("loaded_at_once"):
        lines.append(loaded.table_line(results["loaded_at_once"]))
    if results.get("websocket_echo"):
        lines.append(ws_echo.table_line(results["websocket_echo"]))
    if results.get("two_node"):
        lines.append(two_nodes.table_line(results["two_node"]))
    if results.get("tcp"):
        lines += tcp_scenario.table_lines(results["tcp"])
    for label, target in results["targets"].items():
        if not target["available"]:
            lines.append(f"{label}: unavailable ({target['reason']})")
    profiled = results.get("profile")
    if profiled:
        lines.append(
            f"Profiles (py-spy, speedscope JSON): {profiled['dir']}"
            if not profiled["reason"]
            else f"Profiles: none ({profiled['reason']})"
        )
    box = results["machine"]
    lines.append(
        f"Machine: {box['cores']} cores ({box['nproc']} usable), load average "
        f"{_loads(box['load_before'])} before, {_loads(box['load_after'])} after."
    )
    return "\n".join(lines)


def _measured_line(scale: dict[str, Any]) -> str:
    """The scale scenario's measured tunnel, alone and beside the idle tunnels."""
    measured = scale["measured"]

    def shown(run: dict[str, Any]) -> str:
        return (
            f"{_num(run['rps'])} req/s, p50 {_num(run['p50_ms'], 2)} / p99 "
            f"{_num(run['p99_ms'], 2)} / p99.9 {_num(run['p999_ms'], 2)} ms"
        )

    return (
        f"One tunnel (our lt, 1 KiB x{measured['connections']}) alone: "
        f"{shown(measured['alone'])}; beside {scale['tunnels']:,} idle tunnels: "
        f"{shown(measured['beside_idle'])}."
    )


def _loads(values: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values) or "n/a"
