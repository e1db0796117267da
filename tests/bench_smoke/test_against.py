"""`python -m bench.against` (docs/benchmarks.md): the loaded scenario on the code before
issue 17's work and on this tree, side by side, end to end at its smallest: both sides
carry load and the summary has a ratio for each kind of run. No timing assertions: the
ratios are what it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.against import BEFORE_ISSUE_17
from bench.procs import client_env

ROOT = Path(__file__).resolve().parents[2]


# Two sides of migrations, a relay, two clients and two 1 s runs each: 40 to 60 s on two
# idle cores; the deadline is for a hang, not for speed.
@pytest.mark.timeout(400)
def test_one_small_pair_against_the_code_before_issue_17(tmp_path: Path) -> None:
    out = tmp_path / "against.json"
    command = [
        sys.executable,
        "-m",
        "bench.against",
        "--pairs=1",
        "--tunnels=2",
        "--rounds=1",
        "--duration=1",
        "--warmup=0",
        f"--out={out}",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=client_env(), capture_output=True, text=True, timeout=360
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["ref"] == BEFORE_ISSUE_17
    (pair,) = result["pairs"]
    for side in ("before", "this_tree"):
        assert pair[side]["loaded"] == 2, pair[side]["unavailable"]
        assert pair[side]["total_rps"] > 0 and pair[side]["errors"] == 0, pair[side]
    kinds = ["equal_weights"]
    if pair["this_tree"]["relay_weighted"].get("total_rps"):  # may this machine weigh it?
        kinds.append("relay_weighted")
    for kind in kinds:
        summary = result["summary"][kind]
        assert len(summary["pair_ratios"]) == 1 and summary["median_pair_ratio"] > 0, summary
    assert "median pair" in done.stdout and f"wrote {out}" in done.stdout


def test_a_ref_that_is_no_commit_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.against", "no-such-ref", f"--out={tmp_path / 'x.json'}"],
        cwd=ROOT,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot export 'no-such-ref'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.json").exists()
