"""One wrk run, read back as numbers: a Lua `done` hook prints a JSON line."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

WRK = "wrk"
ERROR_KINDS = ("connect", "read", "write", "status", "timeout")
_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9)))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: int  # socket errors plus non-2xx/3xx answers
    p50_ms: float
    p99_ms: float
    p999_ms: float  # the 99.9th percentile: the slowest request in a thousand
    # `errors` by wrk's kinds (connect, read, write, status: non-2xx/3xx, timeout), non-zero only
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6


def run_wrk(
    url: str,
    host: str,
    connections: int,
    duration_s: int,
    threads: int = 1,
    headers: tuple[str, ...] = (),
) -> WrkResult:
    """wrk against `url` with `Host: host` and `headers` ("Name: value") on every request."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "done.lua"
        script.write_text(_LUA)
        args = [
            WRK,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            "-H",
            f"Host: {host}",
            *(arg for header in headers for arg in ("-H", header)),
            url,
        ]
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=duration_s + 30, check=False
        )
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            raw = json.loads(line.removeprefix("WRKJSON "))
            kinds = {k: raw[k] for k in ERROR_KINDS if raw[k]}
            errors = sum(kinds.values())
            return WrkResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                bytes=raw["bytes"],
                errors=errors,
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                p999_ms=raw["p999_us"] / 1000,
                error_kinds=kinds,
            )
    raise RuntimeError(f"wrk printed no result (exit {done.returncode}): {done.stderr.strip()}")
