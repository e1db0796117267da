"""`manage.py benchrelay --quick` end to end: it runs, and its JSON has the promised keys
with sane positive numbers. No timing assertions: speed is what the benchmark reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NPM_LT = ROOT / "tests" / ".npm" / "node_modules" / ".bin" / "lt"
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
)


@pytest.fixture(autouse=True)
def _tools_installed() -> None:
    """`make test` installs wrk and the npm client: a missing one is a broken set-up, not a skip."""
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed; `make test` installs it with apt")
    if not NPM_LT.exists():
        pytest.fail("the npm client is not installed; run `make test` once")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and value > 0


def test_quick_benchmark_writes_json_with_positive_figures(tmp_path: Path) -> None:
    output = tmp_path / "bench-results.json"
    done = subprocess.run(
        [sys.executable, "manage.py", "benchrelay", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(output.read_text())

    assert {"date", "machine", "caveat", "scenarios"} <= results.keys()
    assert results["machine"]["nproc"] >= 1
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
        for cost in ("upgrade_cost", "pool_tls_cost", "access_cost", "inspect_cost"):
            assert isinstance(scenario[cost], float), (scenario["name"], cost)
    assert "| scenario |" in done.stdout
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
