"""`benchrelay --profile`: py-spy samples the relay and our `lt` during one extra 1 KiB x10
wrk run on the `ours` target (after the measured rounds, so the profiler's cost lands on no
figure), each written as a speedscope JSON file (open it at https://www.speedscope.app)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.procs import StartError
from bench.wrk import run_wrk

if TYPE_CHECKING:
    from bench.scenarios import Bench
    from bench.targets import Target

PY_SPY = Path(sys.executable).parent / "py-spy"  # pinned in the test extras (pyproject.toml)
RATE_HZ = 200  # samples per second: enough for a few seconds' run, little load on 2 cores
CONNECTIONS = 10
START_TIMEOUT_S = 20.0
WRITE_TIMEOUT_S = 60.0  # after the recording: py-spy folds and writes its samples
ROLES = ("relay", "client")


def record(bench: Bench, target: Target, out_dir: Path) -> dict[str, Any]:
    """Profile `target`'s relay and client during one wrk run; where the files went, or why
    there are none."""
    if not PY_SPY.exists():
        return {"dir": None, "files": {}, "reason": f"{PY_SPY} is not installed"}
    if not target.available:
        return {"dir": None, "files": {}, "reason": f"{target.label}: {target.reason}"}
    out_dir.mkdir(parents=True, exist_ok=True)
    duration_s = bench.options.duration_s
    mark = bench.children.mark()
    files: dict[str, str] = {}
    try:
        spies = []
        for role in ROLES:
            out = out_dir / f"{role}-{target.label}.speedscope.json"
            args = [str(PY_SPY), "record", "--pid", str(target.pids[role])]
            # One second more than wrk runs, so the whole run is in the recording.
            args += ["--duration", str(duration_s + 1), "--rate", str(RATE_HZ)]
            args += ["--format", "speedscope", "--output", str(out), "--nonblocking"]
            spies.append((role, out, bench.children.start(args, name=f"py-spy ({role})")))
        for _, _, spy in spies:
            spy.wait_for_line(r"Sampling process", START_TIMEOUT_S)
        result = run_wrk(target.url("/1k"), target.host, CONNECTIONS, duration_s)
        for role, out, spy in spies:
            spy.wait_for_line(r"Wrote speedscope file", duration_s + WRITE_TIMEOUT_S)
            files[role] = str(out)
    except StartError as exc:
        return {"dir": str(out_dir), "files": files, "reason": f"{exc}".splitlines()[0][:300]}
    finally:
        bench.children.stop_since(mark)
    bench.say(f"profile: {result.requests:,} requests profiled; speedscope files in {out_dir}")
    return {
        "dir": str(out_dir),
        "files": files,
        "samples": {role: samples(Path(path)) for role, path in files.items()},
        "requests": result.requests,
        "reason": None,
    }


def samples(path: Path) -> int:
    """How many samples a speedscope file holds (over all its profiles)."""
    data = json.loads(path.read_text())
    return sum(len(profile.get("samples", ())) for profile in data.get("profiles", ()))
