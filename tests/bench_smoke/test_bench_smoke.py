"""`manage.py benchrelay --quick --profile` end to end: it runs every target once (the
localtunnel reference server too), and its JSON has the promised keys with sane positive
numbers. No timing assertions: speed is what the benchmark reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NPM_LT = ROOT / "tests" / ".npm" / "node_modules" / ".bin" / "lt"
REFERENCE = ROOT / "bench" / ".reference"  # the Makefile's REFERENCE_DIR
STOP_TIMEOUT_S = 60.0  # benchrelay stopping its children after a SIGTERM (10 s for each to exit)
SCENARIO_KEYS = {
    "name",
    "direct_rps",
    "ours_rps",
    "npm_rps",
    "ours_p50_ms",
    "ours_p99_ms",
    "npm_p50_ms",
    "ours_ratio",
    "npm_ratio",
    "tls_pool_rps",
    "tls_pool_ratio",
    "upgrade_cost",
    "pool_tls_cost",
    "access_cost",
    "inspect_cost",
    "reference_rps",
    "reference_ratio",
    "ours_vs_reference",
    "ours_vs_reference_p99",
    "npm_vs_reference",
    "npm_vs_reference_p99",
}
TUNNELS = (
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


@pytest.fixture(autouse=True)
def _tools_installed() -> None:
    """`make test` installs wrk and the npm client: a missing one is a broken set-up, not a skip."""
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed; `make test` installs it with apt")
    if not NPM_LT.exists():
        pytest.fail("the npm client is not installed; run `make test` once")
    if not any(REFERENCE.glob(".installed-*")):
        log = REFERENCE / "install.log"
        why = log.read_text()[-500:] if log.exists() else "never installed"
        pytest.fail(f"the reference server is not installed (`make test` installs it): {why}")


def _run_benchrelay(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """benchrelay to its end; past `timeout_s`, SIGTERM (it then stops its children, which
    run in sessions of their own and would outlive a SIGKILL), then SIGKILL, and a failure."""
    command = [sys.executable, "manage.py", "benchrelay", *args]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                stdout, stderr = proc.communicate(timeout=STOP_TIMEOUT_S)
            finally:
                proc.kill()
            pytest.fail(f"benchrelay ran past {timeout_s:g} s:\n{stdout[-3000:]}{stderr[-2000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and value > 0


# Ten targets, the TCP, loaded and scale scenarios and a profile: 32 to 41 CPU-seconds in
# all its processes (user + system, GNU time), 94 s of wall time on 2 cores at a load
# average of 13 and 195 s at 15; the deadline is for a hang, not for speed.
@pytest.mark.timeout(270)
def test_quick_benchmark_writes_json_with_positive_figures(tmp_path: Path) -> None:
    output = tmp_path / "bench-results.json"
    profiles = tmp_path / "profiles"
    args = ["--quick", "--output", str(output), "--profile-dir", str(profiles)]
    done = _run_benchrelay(args, timeout_s=240)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(output.read_text())

    assert {"date", "machine", "caveat", "scenarios"} <= results.keys()
    assert results["machine"]["nproc"] >= 1
    assert results["machine"]["cores"] >= results["machine"]["nproc"]
    for when in ("load_before", "load_after"):  # 1, 5 and 15 minutes
        assert len(results["machine"][when]) == 3, results["machine"]
    assert results["reference"]["installed"] is True, results["reference"]
    assert results["reference"]["server_version"] == "0.1.0", results["reference"]
    assert _positive(results["idle_tunnel_rss_kb"]) or results["idle_tunnel_rss_kb"] == 0
    assert _positive(results["tunnels_per_s"])
    assert results["scale"]["deleted"] == results["scale"]["tunnels"]
    names = [s["name"] for s in results["scenarios"]]
    assert len(names) == 5, names
    for label in TUNNELS:  # each tunnel came up; else the reason says why
        assert results["targets"][label]["available"], results["targets"][label]["reason"]
    for scenario in results["scenarios"]:
        assert SCENARIO_KEYS <= scenario.keys(), scenario["name"]
        for label in ("direct", *TUNNELS):
            for key in (f"{label}_rps", f"{label}_p50_ms", f"{label}_p99_ms"):
                assert _positive(scenario[key]), (scenario["name"], key, scenario[key])
            assert scenario[f"{label}_errors"] == 0, (scenario["name"], label, scenario)
        for label in TUNNELS:
            assert _positive(scenario[f"{label}_ratio"]), (scenario["name"], label)
            if scenario["tool"] == "wrk":  # the relay's CPU per request, from /proc
                assert _positive(scenario[f"{label}_relay_cpu_us"]), (scenario["name"], label)
        if scenario["tool"] == "wrk":
            _check_latency_and_cpu(scenario)
        for cost in ("upgrade_cost", "pool_tls_cost", "access_cost", "inspect_cost"):
            assert isinstance(scenario[cost], float), (scenario["name"], cost)
        for versus in ("ours_vs_reference", "npm_vs_reference"):
            for key in (versus, f"{versus}_p99"):
                assert _positive(scenario[key]), (scenario["name"], key, scenario[key])
    assert "| scenario |" in done.stdout
    assert "| ours / reference | npm / reference |" in done.stdout
    assert "| scenario | target | p50 ms | p99 ms | p99.9 ms |" in done.stdout
    _check_scale(results)
    _check_profiles(results, profiles)
    tcp = results["tcp"]  # MB/s through `lt tcp` vs direct (bench/tcp_scenario.py)
    assert tcp["skipped"] is None, tcp["skipped"]
    rows = [row["name"] for row in tcp["rows"]]
    assert rows == ["download x1", "download x10", "upload x1", "upload x10"], rows
    for row in tcp["rows"]:
        for key in ("direct_mbps", "tcp_mbps", "tcp_ratio"):
            assert _positive(row[key]), (row["name"], key, row[key])
        assert (row["direct_errors"], row["tcp_errors"]) == (0, 0), row
        assert row["tcp_sha256_ok"] is True, row
    assert "| transfer | direct | lt tcp | ratio |" in done.stdout


def _check_latency_and_cpu(scenario: dict[str, Any]) -> None:
    """p99.9 beside p50 and p99, and the CPU per request of each process of each target."""
    for label in ("direct", *TUNNELS):
        p50, p99, p999 = (scenario[f"{label}_{key}_ms"] for key in ("p50", "p99", "p999"))
        assert _positive(p999) and p50 <= p99 <= p999, (scenario["name"], label, p50, p99, p999)
        cpu = scenario[f"{label}_cpu_us"]
        server = {"direct": set(), "reference": {"reference"}}.get(label, {"relay"})
        expected = server | ({"app", "total"} if label == "direct" else {"client", "app", "total"})
        assert set(cpu) == expected, (scenario["name"], label, cpu)
        for role in expected - {"app"}:  # the app may use less than a clock tick in a round
            assert _positive(cpu[role]), (scenario["name"], label, role, cpu)
        assert cpu["app"] >= 0, (scenario["name"], label, cpu)


def _check_scale(results: dict[str, Any]) -> None:
    """20 (here 3) tunnels loaded at once; WebSocket echoes; one tunnel measured alone and
    beside idle ones."""
    loaded = results["loaded_at_once"]
    assert loaded["tunnels"] == loaded["loaded"] == 3, loaded
    assert loaded["errors"] == 0 and loaded["error_kinds"] == {}, loaded
    for key in ("total_rps", "p50_ms_median", "p99_ms_median", "p999_ms_median"):
        assert _positive(loaded[key]), (key, loaded)
    for role in ("relay", "client", "total", "wrk"):
        assert _positive(loaded["cpu_us"][role]), (role, loaded)
    assert 0 < loaded["machine_busy"] <= 1, loaded
    assert 0 <= loaded["relay_run_queue_share"] < 1, loaded
    # The same load with the relay weighted above the clients and wrks, where a process of
    # this machine may take a negative nice (root, as CI runs); otherwise the reason why not.
    weighted = loaded["relay_weighted"]
    if _may_lower_nice():
        assert weighted["weight_unavailable"] is None and weighted["errors"] == 0, weighted
        assert _positive(weighted["total_rps"]) and _positive(weighted["cpu_us"]["relay"])
        assert 0 < weighted["machine_busy"] <= 1, weighted
        assert 0 <= weighted["relay_run_queue_share"] < 1, weighted
    else:
        assert "could not be weighted" in weighted["weight_unavailable"], weighted
        assert "total_rps" not in weighted, weighted
    echo = results["websocket_echo"]  # one WebSocket's echoes through each plain-http target
    assert echo["errors"] == {}, echo
    assert {"direct", "ours", "ours_raw", "npm", "reference"} <= echo["targets"].keys(), echo
    for label, figures in echo["targets"].items():
        assert 0 < figures["p50_ms"] <= figures["p99_ms"], (label, figures)
        assert _positive(figures["echoes_per_s"]), (label, figures)
    measured = results["scale"]["measured"]
    for when in ("alone", "beside_idle"):
        for key in ("rps", "p50_ms", "p99_ms", "p999_ms"):
            assert _positive(measured[when][key]), (when, key, measured)
        assert measured[when]["errors"] == 0, measured
        for role in ("relay", "client", "total"):  # from /proc, as in the rounds
            assert _positive(measured[when]["cpu_us"][role]), (when, role, measured)


def _check_profiles(results: dict[str, Any], folder: Path) -> None:
    """--profile-dir: py-spy's speedscope files of the relay and our lt, holding samples."""
    profiled = results["profile"]
    assert profiled["reason"] is None, profiled
    assert Path(profiled["dir"]) == folder.resolve(), profiled
    for role in ("relay", "client"):
        data = json.loads(Path(profiled["files"][role]).read_text())
        assert data["$schema"].startswith("https://www.speedscope.app/"), role
        assert profiled["samples"][role] > 0, profiled


def _may_lower_nice() -> bool:
    """Whether a process here may lower its nice (CAP_SYS_NICE, or RLIMIT_NICE): a child
    tries, so this process keeps its own."""
    tried = subprocess.run([sys.executable, "-c", "import os; os.nice(-1)"], check=False)
    return tried.returncode == 0
