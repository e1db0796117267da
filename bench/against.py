"""`python -m bench.against [REF]`: the tunnels-loaded-at-once scenario side by side on
another commit and on this tree, in pairs, on this machine now.

Issue 17 asks for twice the load that the code before its work carried with twenty tunnels
loaded at once, and a figure from another day or machine proves nothing: each pair runs
the scenario (`bench.loaded_alone`) on both trees, one right after the other, the order
alternating from pair to pair. The other commit is exported with `git archive` into a
temporary folder and this tree's `bench/` copied over its own, so one harness measures
both; each side runs its own relay and its own `lt` (procs.client_env puts a tree's client
first on its path), with this venv's Python and packages.

Prints each run's figures, then each pair's ratios (this tree over REF) at equal weights and
with the relay weighted (bench/loaded.py), their medians, and the medians of each side's
rounds; writes all of it to `bench-against.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loaded_alone import RESULT_PREFIX
from bench.procs import ROOT, client_env

# The last commit before issue 17's work on speed: what "today's" loaded figure meant.
BEFORE_ISSUE_17 = "361ec50"
OUT = ROOT / "bench-against.json"
# A side's run: migrations, a relay, N clients, a warm-up and rounds x 2 runs of `duration`.
SIDE_TIMEOUT_BASE_S = 180.0
GIT_TIMEOUT_S = 120.0


def export(ref: str, into: Path) -> Path:
    """The tree of `ref` (a commit of this repository) in `into`, with this tree's bench/."""
    archive = into / "tree.tar"
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "archive", "--format=tar", ref],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.PIPE,
            check=True,
            timeout=GIT_TIMEOUT_S,
        )
    tree = into / "before"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    shutil.rmtree(tree / "bench", ignore_errors=True)
    shutil.copytree(ROOT / "bench", tree / "bench", ignore=shutil.ignore_patterns(".reference"))
    return tree


def run_side(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The loaded scenario in `tree`: its figures (bench/loaded.py's summary)."""
    command = [
        sys.executable,
        "-m",
        "bench.loaded_alone",
        f"--tunnels={args.tunnels}",
        f"--rounds={args.rounds}",
        f"--duration={args.duration}",
        f"--warmup={args.warmup}",
    ]
    budget = SIDE_TIMEOUT_BASE_S + args.rounds * 2 * (args.duration + 10) + args.warmup
    done = subprocess.run(
        command,
        cwd=tree,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=budget,
        check=False,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
    raise RuntimeError(f"the loaded scenario failed in {tree}: " + " | ".join(tail))


def _side(result: dict[str, Any], weighted: bool) -> dict[str, Any]:
    """The figures of the equal-weights runs (the summary itself) or of the weighted ones."""
    if weighted:
        return result.get("relay_weighted") or {}
    return result


def _rps(result: dict[str, Any], weighted: bool) -> float | None:
    value = _side(result, weighted).get("total_rps")
    return float(value) if value else None


def _rounds(result: dict[str, Any], weighted: bool) -> list[float]:
    return [float(v) for v in _side(result, weighted).get("rounds_total_rps") or []]


def summary(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each pair's ratio (this tree over the other) and their median, and each side's
    median round, at equal weights and weighted."""
    out: dict[str, Any] = {}
    for weighted, key in ((False, "equal_weights"), (True, "relay_weighted")):
        ratios = []
        for pair in pairs:
            before, after = _rps(pair["before"], weighted), _rps(pair["this_tree"], weighted)
            if before and after:
                ratios.append(round(after / before, 3))
        rounds_before = [r for p in pairs for r in _rounds(p["before"], weighted)]
        rounds_after = [r for p in pairs for r in _rounds(p["this_tree"], weighted)]
        out[key] = {
            "pair_ratios": ratios,
            "median_pair_ratio": round(statistics.median(ratios), 3) if ratios else None,
            "before_median_rps": statistics.median(rounds_before) if rounds_before else None,
            "this_tree_median_rps": statistics.median(rounds_after) if rounds_after else None,
        }
    return out


def _line(result: dict[str, Any]) -> str:
    weighted = _rps(result, True)
    shown = f"{result['total_rps']:,.0f} req/s at equal weights"
    if weighted:
        shown += f", {weighted:,.0f} with the relay weighted"
    cpu = result.get("cpu_us") or {}
    return f"{shown} (relay {cpu.get('relay', 0):,.0f}, clients {cpu.get('client', 0):,.0f} us/req)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.against", description=__doc__)
    parser.add_argument("ref", nargs="?", default=BEFORE_ISSUE_17, help="the other commit")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--tunnels", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5, metavar="S")
    parser.add_argument("--warmup", type=int, default=1, metavar="S")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    pairs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tmp:
        try:
            before = export(args.ref, Path(tmp))
        except subprocess.CalledProcessError as exc:
            why = exc.stderr.decode(errors="replace").strip() if exc.stderr else exc
            print(f"cannot export {args.ref!r}: {why}", file=sys.stderr)
            return 2
        for number in range(args.pairs):
            sides = [("before", before), ("this_tree", ROOT)]
            if number % 2:
                sides.reverse()
            pair: dict[str, Any] = {}
            for label, tree in sides:
                try:
                    pair[label] = run_side(tree, args)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"pair {number + 1}: {exc}", file=sys.stderr)
                    return 1
                shown = args.ref if label == "before" else "this tree"
                print(f"pair {number + 1}/{args.pairs}, {shown}: {_line(pair[label])}", flush=True)
            pairs.append(pair)
    result = {"ref": args.ref, "started": started, "args": vars(args) | {"out": str(args.out)}}
    result |= {"summary": summary(pairs), "pairs": pairs}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key, shown in (("equal_weights", "at equal weights"), ("relay_weighted", "weighted")):
        entry = result["summary"][key]
        if entry["median_pair_ratio"] is None:
            continue
        print(
            f"this tree / {args.ref} {shown}: median pair {entry['median_pair_ratio']:.2f}x "
            f"(pairs {', '.join(f'{r:.2f}x' for r in entry['pair_ratios'])}); median rounds "
            f"{entry['before_median_rps']:,.0f} vs {entry['this_tree_median_rps']:,.0f} req/s"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
