"""`manage.py benchrelay`: the relay against a direct connection, with both tunnel clients.

The work lives in the `bench` package; this command parses arguments, runs it, prints the
table and writes the JSON.
"""

from __future__ import annotations

import datetime
import signal
from pathlib import Path
from types import FrameType

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench import report, table
from bench.procs import ROOT, StartError
from bench.scenarios import Bench, Options


class Command(BaseCommand):
    help = "Benchmark the relay (wrk on loopback): direct vs our lt vs the npm lt, and scale."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--quick", action="store_true", help="short rounds, small transfers, 50 tunnels"
        )
        parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
        parser.add_argument("--duration", type=int, help="seconds per wrk run (default 5)")
        parser.add_argument("--tunnels", type=int, help="tunnels in the scale scenario (1000)")
        parser.add_argument("--transfer-mib", type=int, help="big transfer size in MiB (100)")
        parser.add_argument(
            "--app-work-us",
            type=float,
            help="CPU per request in the local app, in us (20: direct ~ a fast framework app)",
        )
        parser.add_argument(
            "--loaded-tunnels", type=int, help="tunnels loaded at once, a wrk each (20)"
        )
        parser.add_argument(
            "--profile",
            action="store_true",
            help="py-spy the relay and our lt during one extra 1 KiB x10 run (speedscope JSON)",
        )
        parser.add_argument(
            "--profile-dir", help="where --profile writes (bench-profiles/<UTC time>)"
        )
        parser.add_argument(
            "--output", default=str(ROOT / "bench-results.json"), help="where the JSON goes"
        )

    def handle(self, *args: object, **opts: object) -> None:
        options = Options.quick_run() if opts["quick"] else Options()
        for name, attr in (
            ("rounds", "rounds"),
            ("duration", "duration_s"),
            ("tunnels", "tunnels"),
            ("loaded_tunnels", "loaded_tunnels"),
        ):
            value = opts[name]
            if value is not None:
                if int(value) < 1:  # type: ignore[call-overload]
                    raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
                setattr(options, attr, int(value))  # type: ignore[call-overload]
        if opts["transfer_mib"] is not None:
            options.transfer_bytes = int(opts["transfer_mib"]) << 20  # type: ignore[call-overload]
        if opts["app_work_us"] is not None:
            options.app_work_us = float(opts["app_work_us"])  # type: ignore[arg-type]
        if opts["profile"] or opts["profile_dir"]:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
            where = opts["profile_dir"] or ROOT / "bench-profiles" / stamp
            options.profile_dir = Path(str(where)).resolve()
        # SIGTERM unwinds the run like Ctrl-C, so Bench's `finally` stops every child: they
        # run in sessions of their own, and a plain exit would leave them all running.
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            # OutputWrapper writes and flushes as a TextIO does, all that Bench asks of it.
            results = Bench(options, self.stdout).run()  # type: ignore[arg-type]
        except (StartError, TimeoutError, OSError) as exc:
            raise CommandError(f"the benchmark could not run: {exc}") from exc
        finally:
            signal.signal(signal.SIGTERM, previous)
        output = Path(str(opts["output"]))
        report.write_json(results, output)
        self.stdout.write("")
        self.stdout.write(table.table(results))
        self.stdout.write(f"\n{results['caveat']}\nresults written to {output}")


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"benchrelay: stopped by signal {signum}; its children were stopped")
