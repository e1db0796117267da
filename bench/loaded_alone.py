"""`python -m bench.loaded_alone`: the tunnels-loaded-at-once scenario (bench/loaded.py) by
itself, on a relay of the tree it runs from (its current directory). `bench.against` runs
it in two trees; it prints the scenario's progress, its table line, and last a line
`LOADED {json}` with the scenario's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench import loaded
from bench.scenarios import OURS_LT, Bench, Options

RESULT_PREFIX = "LOADED "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loaded_alone", description=__doc__)
    parser.add_argument("--tunnels", type=int, default=Options.loaded_tunnels)
    parser.add_argument("--rounds", type=int, default=Options.rounds)
    parser.add_argument("--duration", type=int, default=Options.duration_s, metavar="S")
    parser.add_argument("--warmup", type=int, default=Options.warmup_s, metavar="S")
    args = parser.parse_args(argv)
    options = Options(
        rounds=args.rounds,
        duration_s=args.duration,
        warmup_s=args.warmup,
        loaded_tunnels=args.tunnels,
    )
    bench = Bench(options, sys.stdout)
    with tempfile.TemporaryDirectory(prefix="benchrelay-") as tmp:
        try:
            template = bench.migrate(Path(tmp))
            app_port = bench.start_app()
            relay = bench.relay_ready(*bench.launch_relay(Path(tmp), template, False, {}))
            result = loaded.run(bench, relay, app_port, [str(OURS_LT)])
        finally:
            bench.children.stop_all()
    bench.say(loaded.table_line(result))
    bench.say(RESULT_PREFIX + json.dumps(result))
    return 0 if result["loaded"] else 1


if __name__ == "__main__":
    sys.exit(main())
