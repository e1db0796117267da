"""Start the app, a relay, the reference server and the tunnel clients, then run the
interleaved rounds.

Every scenario measures these targets in the same run: the app directly, the relay with
our `lt` (its pool upgraded over the relay's own port), the relay with the npm `lt` (raw
pool ports), a second relay serving TLS itself with our `lt` (visitors and pool over
TLS: what the encrypted path costs), on the plain relay also our `lt` with two users' tokens
whose plans differ only in the request inspector (what keeping captures costs), and the
localtunnel reference server with the npm `lt` (bench/reference.py). The CPU per request of
every process a request crosses (server, client, app) comes from /proc. Each round runs
every scenario once per target, in an order rotated every round, so a slow moment of the
machine does not land on one target only; `report` takes medians over rounds. The scale
scenario runs on a fresh relay of its own, so its memory baseline is not the throughput
rounds' leftovers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trustme  # `make bench` installs the test dependencies; the relay never imports it

from bench import (
    loaded,
    profile,
    reference,
    report,
    scale,
    tcp_scenario,
    transfer,
    two_nodes,
    ws_echo,
)
from bench.procs import (
    ROOT,
    Child,
    Children,
    StartError,
    client_env,
    cpu_snapshot,
    cpu_us_per_request,
    wait_until,
)
from bench.targets import Relay, Target, answers
from bench.wrk import WrkResult, run_wrk

__all__ = ["MAX_SOCKETS", "Bench", "Options", "Relay", "Target"]

PYTHON = sys.executable
NPM_LT = ROOT / "tests" / ".npm" / "node_modules" / ".bin" / "lt"
OURS_LT = Path(PYTHON).parent / "lt"
MAX_SOCKETS = 10  # the reference's max_conn_count, set explicitly on the relay
START_TIMEOUT_S = 30.0
SOCKETS_TIMEOUT_S = 20.0
MIGRATE_TIMEOUT_S = 120.0

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
    loaded_tunnels: int = 20  # tunnels loaded at once, each by a wrk of its own
    profile_dir: Path | None = None  # --profile: py-spy's files go here
    quick: bool = False

    @classmethod
    def quick_run(cls) -> Options:
        return cls(
            rounds=1,
            duration_s=1,
            warmup_s=0,
            transfer_bytes=8 << 20,
            tunnels=50,
            loaded_tunnels=3,
            quick=True,
        )


@dataclass
class Launch:
    """A tunnel client started and not yet waited for (`Bench.await_tunnel`)."""

    target: Target
    relay: Relay | None  # None, as `child`: the target is unavailable (its reason says why)
    name: str
    child: Child | None  # None: the client or its server is missing (target.reason says so)


@dataclass
class Bench:
    options: Options
    out: TextIO
    children: Children = field(default_factory=Children)
    # One key for the run's relays, so the inspector targets' tokens check out on them.
    secret_key: str = field(default_factory=lambda: "benchrelay-only-" + secrets.token_hex(16))
    app_pid: int = 0

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if shutil.which("wrk") is None:
            raise StartError("wrk is not installed (apt-get install -y wrk)")
        if not self.options.quick:
            two_nodes.preflight()  # PostgreSQL and Redis: say so now, not minutes later
        load_before = os.getloadavg()
        installed = reference.install()
        if not installed.installed:
            self.say(reference.MISSING.format(why=installed.reason))
        with tempfile.TemporaryDirectory(prefix="benchrelay-") as tmp:
            try:
                template = self.migrate(Path(tmp))
                inspected, uninspected = self.inspect_tokens(template)  # before relays copy it
                app_port = self.start_app()
                # Both relays start at once, then each is waited for.
                plain = self.launch_relay(Path(tmp), template, False, {})
                encrypted = self.launch_relay(Path(tmp), template, True, {})
                relay, tls_relay = self.relay_ready(*plain), self.relay_ready(*encrypted)
                ours, raw = [str(OURS_LT)], [str(OURS_LT), "--raw-pool"]
                # The same npm `lt` command on our relay and on the reference: the servers
                # are the only difference between `npm` and `reference`. Not --local-host:
                # with it the npm client rewrites the Host in the first chunk of each pool
                # socket as text, which corrupts a binary body sent in the same chunk (the
                # reference server sends head and body together: every upload's sha256 failed).
                npm = [str(NPM_LT)]
                ca = ["--ca", tls_relay.ca]
                direct = Target("direct", app_port, f"127.0.0.1:{app_port}", "bench.app")
                direct.pids = {"app": self.app_pid}
                # Every client starts at once, then each is waited for.
                launches = [
                    self.launch_tunnel("ours", ours, relay, app_port),
                    self.launch_tunnel("ours_raw", raw, relay, app_port),
                    self.launch_tunnel("npm", npm, relay, app_port),
                    # Visitor rules on (basic auth, CIDR allow and deny), the same relay and
                    # client as `ours`: what checking them costs per request.
                    self.launch_tunnel("ours_rules", ours + RULES, relay, app_port, RULES_HEADERS),
                    # The request inspector on and off: two users whose plans differ only
                    # in it, the same relay and client (an anonymous tunnel keeps nothing).
                    self.launch_tunnel("ours_inspected", ours + inspected, relay, app_port),
                    self.launch_tunnel("ours_uninspected", ours + uninspected, relay, app_port),
                    self.launch_tunnel("tls_raw", raw + ca, tls_relay, app_port),
                    self.launch_tunnel("tls_pool", ours + ca, tls_relay, app_port),
                    self.launch_reference(installed, npm, app_port),
                ]
                targets = [direct] + [self.await_tunnel(launch) for launch in launches]
                for target in targets:
                    state = "ok" if target.available else f"UNAVAILABLE: {target.reason}"
                    self.say(f"target {target.label}: {state}")
                scenarios = self.throughput(targets)
                scenarios += self.transfers(targets)
                websocket = ws_echo.run(self, targets)
                profiled = None
                if self.options.profile_dir is not None:
                    ours_target = next(t for t in targets if t.label == "ours")
                    profiled = profile.record(self, ours_target, self.options.profile_dir)
                two_node = self.two_nodes(Path(tmp), template, app_port)
                tcp = tcp_scenario.run(self, Path(tmp), template)
                loaded_at_once = loaded.run(self, relay, app_port, ours)
                self.children.stop_all()
                scale_run = scale.run(self, Path(tmp), template, ours)
            finally:
                self.children.stop_all()
        machine = {"load_before": load_before, "load_after": os.getloadavg()}
        return report.build(
            scenarios,
            scale_run,
            targets,
            self.options,
            two_node,
            tcp,
            installed,
            machine,
            loaded_at_once,
            profiled,
            websocket,
        )

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
        self.app_pid = child.pid
        return int(match.group(1))

    def start_relay(self, tmp: Path, template: Path, **extra: str) -> Relay:
        """A relay on a port of its own, plain http; `extra`: environment variables."""
        return self.relay_ready(*self.launch_relay(tmp, template, False, extra))

    def start_tls_relay(self, tmp: Path, template: Path) -> Relay:
        """A relay serving TLS itself, with a certificate for localhost and *.localhost from
        a throwaway CA."""
        return self.relay_ready(*self.launch_relay(tmp, template, True, {}))

    def launch_relay(
        self, tmp: Path, template: Path, tls: bool, extra: dict[str, str]
    ) -> tuple[Child, str]:
        """Start a relay without waiting for it (`relay_ready` waits): (its process, the CA
        file of its certificate when it serves TLS itself, else "")."""
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
            # And every visitor: rounds of 200 wrk connections (the loaded scenario) one after
            # another met the cap of 256 per address while the relay still counted the last
            # round's, closed with their requests in flight (429s, "errors 18").
            "RELAY_MAX_CONNECTIONS_PER_IP": "0",
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
        return child, ca

    def relay_ready(self, child: Child, ca: str) -> Relay:
        """The launched relay once it listens and its status API answers."""
        pattern = r"tunnelsite relay listening on https?://127\.0\.0\.1:(\d+)"
        port = int(child.wait_for_line(pattern, START_TIMEOUT_S).group(1))
        relay = Relay(child, port, ca)
        wait_until(lambda: answers(relay), START_TIMEOUT_S, "the relay's status API")
        return relay

    def launch_reference(
        self, installed: reference.Install, npm: list[str], app_port: int
    ) -> Launch:
        """The localtunnel reference server, then the npm `lt` launched on it; unavailable,
        with the reason, when the server is not installed or does not start."""
        unavailable = Launch(Target("reference"), None, "", None)
        if not installed.installed:
            unavailable.target.reason = reference.MISSING.format(why=installed.reason)
            return unavailable
        try:
            child, port = reference.start(self.children, START_TIMEOUT_S)
            server = Relay(child, port, domain=reference.DOMAIN, dial="127.0.0.1")
            server.role = "reference"
            wait_until(lambda: answers(server), START_TIMEOUT_S, "the reference's status API")
        except (StartError, TimeoutError, OSError) as exc:
            why = f"{exc}".strip().splitlines()[0][:300]
            unavailable.target.reason = f"the reference server did not start: {why}"
            return unavailable
        return self.launch_tunnel("reference", npm, server, app_port)

    def start_tunnel(
        self,
        label: str,
        command: list[str],
        relay: Relay,
        app_port: int,
        headers: tuple[str, ...] = (),
    ) -> Target:
        """Start a tunnel client; an unavailable Target (with the reason) if it fails."""
        return self.await_tunnel(self.launch_tunnel(label, command, relay, app_port, headers))

    def launch_tunnel(
        self,
        label: str,
        command: list[str],
        relay: Relay,
        app_port: int,
        headers: tuple[str, ...] = (),
    ) -> Launch:
        """Start a tunnel client without waiting for it (`await_tunnel` waits), so many
        start at once."""
        name = f"bench-{label.replace('_', '-')}-{secrets.token_hex(3)}"  # a DNS label
        host = f"{name}.{relay.domain}:{relay.port}"
        shown = " ".join(Path(c).name for c in command[:1]) + " " + " ".join(command[1:])
        target = Target(
            label,
            relay.port,
            host,
            shown.strip(),
            scheme=relay.scheme,
            pids={relay.role: relay.child.pid, "app": self.app_pid},
            headers=headers,
            name=name,
            children={relay.role: relay.child},
        )
        if not Path(command[0]).exists():
            target.reason = f"{command[0]} is not installed"
            return Launch(target, relay, name, None)
        relay_url = f"{relay.scheme}://{relay.dial}:{relay.port}"
        args = [*command, "--port", str(app_port), "--host", relay_url]
        env = client_env(PYTHONUNBUFFERED="1")
        child = self.children.start([*args, "--subdomain", name], env, name=f"lt ({label})")
        target.pids["client"] = child.pid
        target.children["client"] = child
        return Launch(target, relay, name, child)

    def await_tunnel(self, launch: Launch, check: bool = True) -> Target:
        """Wait until a launched client has registered and filled its pool, then (`check`)
        send it one second of requests; unavailable, with the reason, if any of it fails."""
        target, relay, name, child = launch.target, launch.relay, launch.name, launch.child
        if child is None or relay is None:
            return target
        try:
            child.wait_for_line(r"your url is: \S+", START_TIMEOUT_S)
            wait_until(
                lambda: relay.sockets(name) == MAX_SOCKETS,
                SOCKETS_TIMEOUT_S,
                f"{MAX_SOCKETS} pool sockets of the {target.label} client",
            )
            if check:  # one small download through it, its sha256 checked
                tls = target.scheme == "https"
                probe = transfer.download(target.port, target.host, 1024, tls, target.headers)
                if not probe.sha256_ok:
                    raise StartError("a 1 KiB download through it came back altered")
        except (StartError, TimeoutError, OSError, RuntimeError, transfer.TransferError) as exc:
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
        # CPU (user + system) per request of each run and process, in microseconds.
        cpu: dict[str, dict[str, list[dict[str, float]]]] = {
            name: {t.label: [] for t in live} for name, _, _ in WRK_SCENARIOS
        }
        for round_no in range(opts.rounds):
            order = _rotated(live, round_no)
            for name, path, conns in WRK_SCENARIOS:
                for target in order:
                    if not target.available:
                        continue  # it stopped answering in an earlier run
                    before = cpu_snapshot(target.pids)
                    result = run_wrk(
                        target.url(path),
                        target.host,
                        conns,
                        opts.duration_s,
                        headers=target.headers,
                    )
                    if not result.requests:
                        # A dead target is not a measurement: its 0 req/s (and 0 ms) in the
                        # medians made the reference's figures a round lower than they were.
                        target.reason = stopped_answering(target, f"round {round_no + 1}, {name}")
                        self.say(
                            f"round {round_no + 1}/{opts.rounds} {name:<15} {target.label}: "
                            f"{target.reason}"
                        )
                        continue
                    used = cpu_us_per_request(before, cpu_snapshot(target.pids), result.requests)
                    results[name][target.label].append(result)
                    cpu[name][target.label].append(used)
                    shown = " ".join(f"{role} {us:,.0f}" for role, us in used.items())
                    self.say(
                        f"round {round_no + 1}/{opts.rounds} {name:<15} {target.label:<8} "
                        f"{result.rps:>9,.0f} req/s {result.mbps:>8,.0f} MB/s "
                        f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms "
                        f"p99.9 {result.p999_ms:6.2f} ms; CPU us/req {shown}"
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


def _certificate(tmp: Path) -> tuple[str, str, str]:
    """A throwaway CA and a certificate for localhost and *.localhost: (ca, cert, key) files."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "*.localhost", "127.0.0.1")
    paths = (tmp / "bench-ca.pem", tmp / "bench-cert.pem", tmp / "bench-key.pem")
    ca.cert_pem.write_to_path(str(paths[0]))
    paths[1].write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


TAIL_LINES = 3  # of each process's output, in the reason a target stopped answering


def stopped_answering(target: Target, when: str) -> str:
    """Why `target` is left out from `when` on: no request was answered in a whole run. Its
    runs before count; which of its processes are gone tells where to look."""
    gone = [role for role, pid in target.pids.items() if not _alive(pid)]
    state = f"its {' and '.join(gone)} exited" if gone else "its processes still run"
    said = [
        f"{role} last said: {' / '.join(child.tail(TAIL_LINES).splitlines())}"
        for role, child in target.children.items()
        if child.tail(TAIL_LINES)
    ]
    return (
        f"stopped answering ({when}: no request answered; {state}); "
        "its figures are from the runs before, and it is left out of the rest"
        + "".join(f"; {line}" for line in said)
    )


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (an exited child not yet reaped is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _rotated(items: list[Target], by: int) -> list[Target]:
    if not items:
        return []
    shift = by % len(items)
    return items[shift:] + items[:shift]
