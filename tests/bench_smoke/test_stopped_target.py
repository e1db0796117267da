"""A target that stops answering partway through the wrk scenarios is left out of the rest,
with the reason, and its dead runs do not count: their 0 req/s and 0 ms went into the
medians, which made the reference server's figures a round lower (and its p99 lower) than
the rounds it answered (bench/scenarios.py `stopped_answering`)."""

from __future__ import annotations

import io
import socket
import sys

from harness.waiting import IO_TIMEOUT_S

from bench.report import TUNNELS
from bench.scenarios import Bench, Options
from bench.targets import Target


def test_a_target_that_answers_nothing_is_left_out_with_the_reason() -> None:
    assert "reference" in TUNNELS
    out = io.StringIO()
    bench = Bench(Options.quick_run(), out)
    try:
        # A server that takes connections and never answers: what the reference's tunnel became.
        with socket.create_server(("127.0.0.1", 0), backlog=128) as silent:
            exited = bench.children.start(
                [sys.executable, "-c", "print('tunnel closed: ECONNRESET')"]
            )
            exited.wait_for_line("tunnel closed", IO_TIMEOUT_S)
            assert exited.proc.wait(IO_TIMEOUT_S) == 0
            target = Target(
                "reference",
                port=silent.getsockname()[1],
                host="ref.localhost",
                pids={"reference": exited.pid},
                children={"reference": exited},
            )
            entries = bench.throughput([target])
    finally:
        bench.children.stop_all()
    assert target.reason.startswith("stopped answering (round 1, 1KiB x10 conns: "), target.reason
    assert "its reference exited" in target.reason
    # What it printed last is in the reason.
    assert target.reason.endswith("; reference last said: tunnel closed: ECONNRESET")
    first, *rest = entries
    assert first["reference_rounds_rps"] == [] and first["reference_rps"] is None
    assert first["reference_unavailable"] == target.reason
    assert all(entry["reference_rounds_rps"] == [] for entry in rest)  # not run again
    said = out.getvalue()
    assert said.count("stopped answering") == 1, said
