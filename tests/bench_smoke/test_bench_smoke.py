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
}


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
    ours_works = results["targets"]["ours"]["available"]
    for scenario in results["scenarios"]:
        assert SCENARIO_KEYS <= scenario.keys(), scenario["name"]
        for key in ("direct_rps", "npm_rps", "npm_p50_ms", "npm_ratio"):
            assert _positive(scenario[key]), (scenario["name"], key, scenario[key])
        assert scenario["direct_errors"] == 0 and scenario["npm_errors"] == 0, scenario
        if ours_works:
            for key in ("ours_rps", "ours_p50_ms", "ours_p99_ms", "ours_ratio"):
                assert _positive(scenario[key]), (scenario["name"], key, scenario[key])
        else:  # reported as unavailable, never filled in
            assert scenario["ours_rps"] is None and scenario["ours_unavailable"]
    assert "| scenario |" in done.stdout
