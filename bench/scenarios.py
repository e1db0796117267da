"""Start the app, a relay and both tunnel clients, then run the interleaved rounds.

Every scenario measures four targets in the same run: the app directly, the relay with
our `lt` (its pool upgraded over the relay's own port), the relay with the npm `lt` (raw
pool ports), and a second relay serving TLS itself with our `lt` (visitors and pool over
TLS: what the encrypted path costs); on the plain relay also our `lt` with two users' tokens
whose plans differ only in the request inspector (what keeping captures costs). The relays'
CPU per request
comes from /proc. Each round runs every scenario once per target, in an order rotated
every round, so a slow moment of the machine does not land on one target only; `report`
takes medians over rounds. The scale scenario runs on a fresh relay of its own, so its
memory baseline is not the throughput rounds' leftovers.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trustme  # `make bench` installs the test dependencies; the relay never imports it

from bench import report, tcp_scenario, transfer, two_nodes
from bench.procs import (
    ROOT,
    Child,
    Children,
    StartError,
    client_env,
    cpu_seconds,
    fd_count,
    rss_kb,
    wait_until,
)
from bench.wrk import WrkResult, run_wrk

PYTHON = sys.executable
NPM_LT = ROOT / "tests" / ".npm" / "node_modules" / ".bin" / "lt"
OURS_LT = Path(PYTHON).parent / "lt"
MAX_SOCKETS = 10  # the reference's max_conn_count, set explicitly on the relay
START_TIMEOUT_S = 30.0
SOCKETS_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 10.0
MIGRATE_TIMEOUT_S = 120.0
HOLDER_READY_TIMEOUT_S = 300.0
SETTLE_TIMEOUT_S = 30.0

# The visitor rules of the ours_rules target, and what its visitors send to pass them. The
# allow and deny lists hold several networks each, as a real rule set would, so the check is
# not a single comparison.
RULES = [
    "--basic-auth",
    "bench:bench-password",
    *("--cidr-allow", "10.0.0.0/8", "--cidr-allow", "127.0.0.0/8", "--cidr-allow", "::1/128"),
    *("--cidr-deny", "192.0.2.0/24", "--cidr-deny", "2001:db8::/32"),
]
RULES_HEADERS = ("Authorization: Basic YmVuY2g6YmVuY2gtcGFzc3dvcmQ=",)  # bench:bench-password

# Two users of the ours_inspected and ours_uninspected targets, on plans that differ only in
# keeping the request inspector's captures; prints their tokens, on then off.
_INSPECT_USERS = """
from django.contrib.auth import get_user_model
from tunnels.models import Account, ApiToken, Plan
tokens = []
for inspect in (True, False):
    name = "bench-inspect-" + ("on" if inspect else "off")
    user = get_user_model().objects.create_user(name)
    plan = Plan.objects.create(
        name=name, max_live_tunnels=0, max_sockets_per_tunnel={sockets}, inspect_requests=inspect
    )
    Account.objects.create(user=user, plan=plan)
    tokens.append(ApiToken.issue(user, name="bench")[1])
print(*tokens)
"""

# (name, path, connections): the wrk scenarios.
WRK_SCENARIOS = [
    ("1KiB x10 conns", "/1k", 10),
    ("1KiB x50 conns", "/1k", 50),
    ("1MiB x10 conns", "/1m", 10),
]


@dataclass
class Options:
    rounds: int = 3
    duration_s: int = 5
    warmup_s: int = 1
    transfer_bytes: int = 100 * 1024 * 1024
    tunnels: int = 1000
    # CPU per request in the app: 20 us makes direct ~26,000 req/s here at 1 KiB x10, like
    # the reference measurement's app (a bare asyncio loop would do ~100,000).
    app_work_us: float = 20.0
    quick: bool = False

    @classmethod
    def quick_run(cls) -> Options:
        return cls(
            rounds=1, duration_s=1, warmup_s=0, transfer_bytes=8 << 20, tunnels=50, quick=True
        )


@dataclass
class Target:
    """Where a scenario sends its traffic: the app itself or a tunnel through the relay."""

    label: str  # one of bench.report.LABELS
    port: int = 0
    host: str = ""
    command: str = ""
    reason: str = ""  # why it is unavailable; "" when it works
    scheme: str = "http"  # https: the relay serving TLS itself
    relay_pid: int = 0  # the relay process whose CPU a request costs; 0 for direct
    headers: tuple[str, ...] = ()  # sent with every request ("Authorization: Basic ...")

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    @property
    def available(self) -> bool:
        return not self.reason


@dataclass
class Relay:
    child: Child
    port: int
    ca: str = ""  # the CA file of its certificate when it serves TLS itself

    @property
    def scheme(self) -> str:
        return "https" if self.ca else "http"

    def get_json(self, path: str) -> tuple[int, Any]:
        conn: http.client.HTTPConnection
        if self.ca:
            context = ssl.create_default_context(cafile=self.ca)
            context.check_hostname = False  # the certificate names localhost, not 127.0.0.1
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S, context=context
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", path, headers={"Host": f"127.0.0.1:{self.port}"})
            answer = conn.getresponse()
            body = answer.read()
        finally:
            conn.close()
        return answer.status, json.loads(body) if body else None

    def status(self) -> dict[str, Any]:
        return self.get_json("/api/status")[1]

    def sockets(self, name: str) -> int:
        code, body = self.get_json(f"/api/tunnels/{name}/status")
        return body["connected_sockets"] if code == 200 else 0


@dataclass
class Bench:
    options: Options
    out: TextIO
    children: Children = field(default_factory=Children)
    # One key for the run's relays, so the inspector targets' tokens check out on them.
    secret_key: str = field(default_factory=lambda: "benchrelay-only-" + secrets.token_hex(16))

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if shutil.which("wrk") is None:
            raise StartError("wrk is not installed (apt-get install -y wrk)")
        if not self.options.quick:
            two_nodes.preflight()  # PostgreSQL and Redis: say so now, not minutes later
        with tempfile.TemporaryDirectory(prefix="benchrelay-") as tmp:
            try:
                template = self.migrate(Path(tmp))
                inspected, uninspected = self.inspect_tokens(template)  # before relays copy it
                app_port = self.start_app()
                relay = self.start_relay(Path(tmp), template)
                tls_relay = self.start_tls_relay(Path(tmp), template)
                ours, raw = [str(OURS_LT)], [str(OURS_LT), "--raw-pool"]
                ca = ["--ca", tls_relay.ca]
                targets = [
                    Target("direct", app_port, f"127.0.0.1:{app_port}", "bench.app"),
                    self.start_tunnel("ours", ours, relay, app_port),
                    self.start_tunnel("ours_raw", raw, relay, app_port),
                    self.start_tunnel("npm", [str(NPM_LT)], relay, app_port),
                    # Visitor rules on (basic auth, CIDR allow and deny), the same relay and
                    # client as `ours`: what checking them costs per request.
                    self.start_tunnel("ours_rules", ours + RULES, relay, app_port, RULES_HEADERS),
                    # The request inspector on and off: two users whose plans differ only
                    # in it, the same relay and client (an anonymous tunnel keeps nothing).
                    self.start_tunnel("ours_inspected", ours + inspected, relay, app_port),
                    self.start_tunnel("ours_uninspected", ours + uninspected, relay, app_port),
                    self.start_tunnel("tls_raw", raw + ca, tls_relay, app_port),
                    self.start_tunnel("tls_pool", ours + ca, tls_relay, app_port),
                ]
                for target in targets:
                    state = "ok" if target.available else f"UNAVAILABLE: {target.reason}"
                    self.say(f"target {target.label}: {state}")
                scenarios = self.throughput(targets)
                scenarios += self.transfers(targets)
                two_node = self.two_nodes(Path(tmp), template, app_port)
                tcp = tcp_scenario.run(self, Path(tmp), template)
                self.children.stop_all()
                scale = self.scale(Path(tmp), template)
            finally:
                self.children.stop_all()
        return report.build(scenarios, scale, targets, self.options, two_node, tcp)

    # --- processes ---------------------------------------------------------------------------
    def migrate(self, tmp: Path) -> Path:
        db = tmp / "template.sqlite3"
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=MIGRATE_TIMEOUT_S,
        )
        return db

    def inspect_tokens(self, template: Path) -> tuple[list[str], list[str]]:
        """`--token` flags of two users in `template` (valid under the run's SECRET_KEY)
        whose plans differ only in keeping the request inspector's captures: on, off."""
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{template}",
            "SECRET_KEY": self.secret_key,
        }
        done = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", _INSPECT_USERS.format(sockets=MAX_SOCKETS)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=MIGRATE_TIMEOUT_S,
        )
        on, off = done.stdout.split()[-2:]
        return ["--token", on], ["--token", off]

    def start_app(self) -> int:
        work = str(self.options.app_work_us)
        args = [PYTHON, "-m", "bench.app", "--port", "0", "--work-us", work]
        child = self.children.start(args, name="app")
        match = child.wait_for_line(r"bench app listening on http://127\.0\.0\.1:(\d+)", 10)
        return int(match.group(1))

    def start_relay(self, tmp: Path, template: Path, **extra: str) -> Relay:
        """A relay on a port of its own, plain http; `extra`: environment variables."""
        return self._relay(tmp, template, False, extra)

    def start_tls_relay(self, tmp: Path, template: Path) -> Relay:
        """A relay serving TLS itself, with a certificate for localhost and *.localhost from
        a throwaway CA."""
        return self._relay(tmp, template, True, {})

    def _relay(self, tmp: Path, template: Path, tls: bool, extra: dict[str, str]) -> Relay:
        db = tmp / f"relay-{secrets.token_hex(4)}.sqlite3"
        shutil.copyfile(template, db)
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{db}",
            "RELAY_LOG_LEVEL": "WARNING",
            # Production-like: DEBUG off (Django would otherwise keep every SQL query).
            "DEBUG": "false",
            "SECRET_KEY": self.secret_key,
            "RELAY_ALLOW_ANONYMOUS": "true",
            "RELAY_DEFAULT_PLAN_MAX_LIVE_TUNNELS": "0",  # every tunnel comes from 127.0.0.1
            "RELAY_REGISTRATIONS_PER_MINUTE": "0",  # and so does every registration
            "RELAY_MAX_SOCKETS": str(MAX_SOCKETS),
            "RELAY_DEFAULT_PLAN_MAX_SOCKETS": str(MAX_SOCKETS),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
        args = [PYTHON, "manage.py", "runrelay", "--port", "0", "--bind", "127.0.0.1"]
        ca = ""
        if tls:
            ca, cert, key = _certificate(tmp)
            args += ["--tls-cert", cert, "--tls-key", key]
        name = "relay (TLS)" if tls else "relay"
        child = self.children.start([*args, "--domain", "localhost"], env, name=name)
        pattern = r"tunnelsite relay listening on https?://127\.0\.0\.1:(\d+)"
        port = int(child.wait_for_line(pattern, START_TIMEOUT_S).group(1))
        relay = Relay(child, port, ca)
        wait_until(lambda: _answers(relay), START_TIMEOUT_S, "the relay's status API")
        return relay

    def start_tunnel(
        self,
        label: str,
        command: list[str],
        relay: Relay,
        app_port: int,
        headers: tuple[str, ...] = (),
    ) -> Target:
        """Start a tunnel client; an unavailable Target (with the reason) if it fails."""
        name = f"bench-{label.replace('_', '-')}-{secrets.token_hex(3)}"  # a DNS label
        host = f"{name}.localhost:{relay.port}"
        shown = " ".join(Path(c).name for c in command[:1]) + " " + " ".join(command[1:])
        target = Target(
            label,
            relay.port,
            host,
            shown.strip(),
            scheme=relay.scheme,
            relay_pid=relay.child.pid,
            headers=headers,
        )
        if not Path(command[0]).exists():
            target.reason = f"{command[0]} is not installed"
            return target
        relay_url = f"{relay.scheme}://localhost:{relay.port}"
        args = [*command, "--port", str(app_port), "--host", relay_url]
        # PYTHONPATH: a stale editable install can make `client` a namespace package.
        env = client_env(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        child = self.children.start([*args, "--subdomain", name], env, name=f"lt ({label})")
        try:
            child.wait_for_line(r"your url is: \S+", START_TIMEOUT_S)
            wait_until(
                lambda: relay.sockets(name) == MAX_SOCKETS,
                SOCKETS_TIMEOUT_S,
                f"{MAX_SOCKETS} pool sockets of the {label} client",
            )
            check = run_wrk(target.url("/1k"), host, 1, 1, headers=headers)
            if check.requests == 0 or check.errors:
                raise StartError(f"{check.errors} errors in {check.requests} requests")
        except (StartError, TimeoutError, OSError, RuntimeError) as exc:
            child.stop()
            target.reason = f"{exc}".strip().splitlines()[0][:300]
        return target

    # --- scenarios ----------------------------------------------------------------------------
    def throughput(self, targets: list[Target]) -> list[dict[str, Any]]:
        live = [t for t in targets if t.available]
        opts = self.options
        if opts.warmup_s:
            for target in live:
                run_wrk(target.url("/1k"), target.host, 10, opts.warmup_s, headers=target.headers)
        results: dict[str, dict[str, list[WrkResult]]] = {
            name: {t.label: [] for t in live} for name, _, _ in WRK_SCENARIOS
        }
        # Relay CPU (user + system) per request of each run, in microseconds.
        cpu: dict[str, dict[str, list[float]]] = {
            name: {t.label: [] for t in live if t.relay_pid} for name, _, _ in WRK_SCENARIOS
        }
        for round_no in range(opts.rounds):
            order = _rotated(live, round_no)
            for name, path, conns in WRK_SCENARIOS:
                for target in order:
                    before = cpu_seconds(target.relay_pid) if target.relay_pid else 0.0
                    result = run_wrk(
                        target.url(path),
                        target.host,
                        conns,
                        opts.duration_s,
                        headers=target.headers,
                    )
                    results[name][target.label].append(result)
                    used = ""
                    if target.relay_pid and result.requests:
                        spent = cpu_seconds(target.relay_pid) - before
                        cpu[name][target.label].append(spent / result.requests * 1e6)
                        used = f" relay {cpu[name][target.label][-1]:6.0f} us/req"
                    self.say(
                        f"round {round_no + 1}/{opts.rounds} {name:<15} {target.label:<8} "
                        f"{result.rps:>9,.0f} req/s {result.mbps:>8,.0f} MB/s "
                        f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms{used}"
                        + (f" errors {result.errors}" if result.errors else "")
                    )
        return [
            report.wrk_scenario(
                name, "MB/s" if path == "/1m" else "req/s", results[name], targets, cpu[name]
            )
            for name, path, _ in WRK_SCENARIOS
        ]

    def transfers(self, targets: list[Target]) -> list[dict[str, Any]]:
        live = [t for t in targets if t.available]
        size = self.options.transfer_bytes
        label = f"{size / (1 << 20):g}MiB"
        kinds: list[
            tuple[str, Callable[[int, str, int, bool, tuple[str, ...]], transfer.TransferResult]]
        ] = [
            (f"{label} download", transfer.download),
            (f"{label} upload", transfer.upload),
        ]
        results: dict[str, dict[str, list[transfer.TransferResult | str]]] = {
            name: {t.label: [] for t in live} for name, _ in kinds
        }
        for round_no in range(self.options.rounds):
            for name, move in kinds:
                for target in _rotated(live, round_no):
                    try:
                        tls = target.scheme == "https"
                        result: transfer.TransferResult | str = move(
                            target.port, target.host, size, tls, target.headers
                        )
                    except (transfer.TransferError, OSError, ValueError) as exc:
                        result = f"{type(exc).__name__}: {exc}"
                    results[name][target.label].append(result)
                    if isinstance(result, str):
                        shown = result
                    else:
                        check = "ok" if result.sha256_ok else "BAD"
                        shown = f"{result.mbps:8,.0f} MB/s sha256 {check}"
                    self.say(f"round {round_no + 1} {name:<17} {target.label:<8} {shown}")
        return [report.transfer_scenario(name, results[name], targets) for name, _ in kinds]

    def two_nodes(self, tmp: Path, template: Path, app_port: int) -> dict[str, Any]:
        """Owner vs non-owner node on PostgreSQL + Redis (bench/two_nodes.py)."""
        if self.options.quick:
            self.say("two nodes: skipped with --quick (it needs PostgreSQL, Redis and ~45 s)")
            return two_nodes.skipped("--quick")
        return two_nodes.run(self, tmp, template, app_port, NPM_LT)

    def scale(self, tmp: Path, template: Path) -> dict[str, Any]:
        """Register many tunnels with full idle pools; memory and descriptors, then teardown."""
        relay = self.start_relay(tmp, template, RELAY_GRACE_S="120")
        pid = relay.child.pid
        count = self.options.tunnels
        _warm_up(relay)  # first-use allocations are not per-tunnel costs
        before = {"rss_kb": rss_kb(pid), "fds": fd_count(pid)}
        holder = self.children.start(
            [PYTHON, "-m", "bench.holder", "--port", str(relay.port), "--tunnels", str(count)],
            client_env(),
            name="holder",
            stdin=subprocess.PIPE,
        )
        ready = json.loads(
            holder.wait_for_line(
                r"^HOLDER (\{\"event\": \"ready\".*)$", HOLDER_READY_TIMEOUT_S
            ).group(1)
        )
        sockets = ready["sockets"]
        wait_until(
            lambda: relay.status()["sockets"] == sockets,
            SETTLE_TIMEOUT_S,
            f"the relay to count {sockets} pool sockets",
        )
        held = {"rss_kb": rss_kb(pid), "fds": fd_count(pid)}
        self.say(f"scale: {count} tunnels, {sockets} idle sockets; before {before}, held {held}")
        holder.send_line("teardown")
        done = json.loads(
            holder.wait_for_line(
                r"^HOLDER (\{\"event\": \"done\".*)$", HOLDER_READY_TIMEOUT_S
            ).group(1)
        )
        settled = True
        try:
            wait_until(lambda: relay.status()["tunnels"] == 0, SETTLE_TIMEOUT_S, "no tunnels")
            wait_until(
                lambda: fd_count(pid) <= before["fds"] + 5,
                SETTLE_TIMEOUT_S,
                "descriptors back to the baseline",
            )
        except TimeoutError:
            settled = False
        after = {"rss_kb": rss_kb(pid), "fds": fd_count(pid)}
        self.say(f"scale: after teardown {after}")
        return report.scale_summary(count, ready, done, before, held, after, settled)


def _certificate(tmp: Path) -> tuple[str, str, str]:
    """A throwaway CA and a certificate for localhost and *.localhost: (ca, cert, key) files."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "*.localhost", "127.0.0.1")
    paths = (tmp / "bench-ca.pem", tmp / "bench-cert.pem", tmp / "bench-key.pem")
    ca.cert_pem.write_to_path(str(paths[0]))
    paths[1].write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


def _answers(relay: Relay) -> bool:
    try:
        return relay.get_json("/api/status")[0] == 200
    except (OSError, http.client.HTTPException, ValueError, ssl.SSLError):
        return False


def _warm_up(relay: Relay, count: int = 20) -> None:
    """Register and delete a few tunnels, so code paths and caches are warm."""
    for _ in range(count):
        code, body = relay.get_json("/?new")
        if code != 200:
            raise StartError(f"warm-up registration answered {code}: {body}")
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("DELETE", f"/api/tunnels/{body['id']}")
            conn.getresponse().read()
        finally:
            conn.close()
    wait_until(lambda: relay.status()["tunnels"] == 0, SETTLE_TIMEOUT_S, "warm-up teardown")


def _rotated(items: list[Target], by: int) -> list[Target]:
    if not items:
        return []
    shift = by % len(items)
    return items[shift:] + items[:shift]
