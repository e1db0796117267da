"""Network namespaces for tests of the path between `lt` and the relay (tests/network/).

`Network` makes two namespaces, a relay's and a client's, joined by a veth pair
(`RELAY_ADDRESS` <-> `CLIENT_ADDRESS` on one /24), each with its loopback up; names are unique
per test and xdist worker, and everything is removed in `close()` (a `finally`), processes
started inside first. Processes run inside with `ip netns exec` (the command's own pid, so a
`ProcessGroup` stops them); names resolve there through `/etc/netns/<ns>/hosts`, which
`ip netns exec` mounts over `/etc/hosts` (the relay's domain and its tunnels' names).

The test process itself opens sockets inside a namespace with `connect_in` (setns(2) on this
thread for the connect only: a socket stays in the namespace it was made in), so visitors are
ordinary sockets, TLS or not, with h11 or `websockets` on them.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme
from websockets.asyncio.client import connect

from bench.procs import client_env
from harness.http import Answer, Visitor
from harness.processes import PYTHON, Process, ProcessGroup
from harness.relay import LOCAL_APP, RELAY_TEST_ENV
from harness.waiting import IO_TIMEOUT_S, wait_until

IP = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin") or "ip"
TC = shutil.which("tc", path="/usr/sbin:/sbin:/usr/bin") or "tc"
TCPDUMP = shutil.which("tcpdump", path="/usr/bin:/usr/sbin") or "tcpdump"
IPTABLES = shutil.which("iptables", path="/usr/sbin:/sbin:/usr/bin") or "iptables"
WAN_APP = Path(__file__).resolve().parents[1] / "apps" / "wan.py"
# The netfilter queue tests/apps/wan.py serves (queues are per namespace: any number does).
WAN_QUEUE = 7
COMMAND_TIMEOUT_S = 10.0
NETNS_ETC = Path("/etc/netns")
CLONE_NEWNET = 0x40000000
PREFIX = 24
RELAY_ADDRESS = "10.77.0.1"
CLIENT_ADDRESS = "10.77.0.2"
# Where a test moves the client (a laptop from Wi-Fi to tethering), and another host on the
# client's side of the link (a second machine that tries to take a tunnel's name).
MOVED_CLIENT_ADDRESS = "10.77.0.3"
OTHER_CLIENT_ADDRESS = "10.77.0.9"
# A tunnel's pool connections on the relay's defaults (RELAY_MAX_SOCKETS).
DEFAULT_MAX_SOCKETS = 10

_libc = ctypes.CDLL(None, use_errno=True)


def run(args: list[str]) -> str:
    """A command that must succeed (ip, tc); its output."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class Namespace:
    """One network namespace: its name, its end of the veth pair and that end's address."""

    def __init__(self, name: str, device: str, address: str) -> None:
        self.name = name
        self.device = device
        self.address = address

    def command(self, args: list[str]) -> list[str]:
        """`args` as run inside this namespace."""
        return [IP, "netns", "exec", self.name, *args]

    def run(self, args: list[str]) -> str:
        return run(self.command(args))

    @contextmanager
    def entered(self) -> Iterator[None]:
        """This thread in the namespace (for making sockets there), then back."""
        with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{self.name}") as there:
            _setns(there.fileno())
            try:
                yield
            finally:
                _setns(home.fileno())

    def connect_in(
        self, host: str, port: int, timeout: float, source: str | None = None
    ) -> socket.socket:
        """A TCP connection made from inside this namespace."""
        with self.entered():
            return socket.create_connection(
                (host, port), timeout=timeout, source_address=(source, 0) if source else None
            )

    def set_address(self, old: str, new: str) -> None:
        """Move this end of the link from `old` to `new` (the laptop changed networks)."""
        self.run([IP, "addr", "del", f"{old}/{PREFIX}", "dev", self.device])
        self.run([IP, "addr", "add", f"{new}/{PREFIX}", "dev", self.device])
        self.address = new

    def add_address(self, address: str) -> None:
        self.run([IP, "addr", "add", f"{address}/{PREFIX}", "dev", self.device])

    def netem(self, delay_ms: int, loss_percent: float) -> bool:
        """A WAN on this end's egress: `tc qdisc add dev ... root netem delay .. loss ..`;
        False when the kernel has no netem (CONFIG_NET_SCH_NETEM)."""
        try:
            self.run(
                [TC, "qdisc", "add", "dev", self.device, "root", "netem"]
                + ["delay", f"{delay_ms}ms", "loss", f"{loss_percent}%"]
            )
        except RuntimeError as error:
            if "qdisc kind is unknown" in str(error):
                return False
            raise
        return True

    def pids(self) -> list[int]:
        return [int(pid) for pid in run([IP, "netns", "pids", self.name]).split()]


class Network:
    """A relay namespace and a client namespace joined by a veth pair; `close()` removes
    them, with every process still running inside, and their hosts files."""

    def __init__(self, hosts: dict[str, str] | None = None) -> None:
        tag = f"{os.environ.get('PYTEST_XDIST_WORKER', 'gw')}-{uuid.uuid4().hex[:6]}"
        short = uuid.uuid4().hex[:8]
        self.relay = Namespace(f"ts-relay-{tag}", f"vr{short}", RELAY_ADDRESS)
        self.client = Namespace(f"ts-client-{tag}", f"vc{short}", CLIENT_ADDRESS)
        self._made: list[Namespace] = []
        try:
            for ns in (self.relay, self.client):
                run([IP, "netns", "add", ns.name])
                self._made.append(ns)
                ns.run([IP, "link", "set", "lo", "up"])
            run(
                [IP, "link", "add", "name", self.relay.device, "netns", self.relay.name]
                + ["type", "veth", "peer", "name", self.client.device]
                + ["netns", self.client.name]
            )
            for ns in (self.relay, self.client):
                ns.run([IP, "addr", "add", f"{ns.address}/{PREFIX}", "dev", ns.device])
                ns.run([IP, "link", "set", ns.device, "up"])
                self.write_hosts(ns, hosts or {})
        except BaseException:
            self.close()
            raise

    def write_hosts(self, ns: Namespace, hosts: dict[str, str]) -> None:
        """Names that resolve inside `ns` (name -> address), over `/etc/hosts`."""
        where = NETNS_ETC / ns.name
        where.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost"] + [f"{addr} {name}" for name, addr in hosts.items()]
        (where / "hosts").write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        """Kill what still runs inside, then delete the namespaces (their veth ends go too)."""
        for ns in reversed(self._made):
            try:
                for pid in ns.pids():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            finally:
                subprocess.run(
                    [IP, "netns", "del", ns.name], capture_output=True, timeout=COMMAND_TIMEOUT_S
                )
                shutil.rmtree(NETNS_ETC / ns.name, ignore_errors=True)
        self._made.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


PCAP_HEADER = struct.Struct("=IHHiIII")
PCAP_RECORD = struct.Struct("=IIII")
ETHERNET_HEADER_BYTES = 14
ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP = 6


def tcp_ports_of(pcap: bytes, address: str) -> set[int]:
    """The TCP ports `address` used in a capture (Ethernet, IPv4): the relay's side of every
    connection the capture saw."""
    ports: set[int] = set()
    wanted = socket.inet_aton(address)
    offset = PCAP_HEADER.size
    while offset + PCAP_RECORD.size <= len(pcap):
        _, _, length, _ = PCAP_RECORD.unpack_from(pcap, offset)
        frame = pcap[offset + PCAP_RECORD.size : offset + PCAP_RECORD.size + length]
        offset += PCAP_RECORD.size + length
        if len(frame) < ETHERNET_HEADER_BYTES + 20:
            continue
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        ip = frame[ETHERNET_HEADER_BYTES:]
        if ethertype != ETHERTYPE_IPV4 or ip[9] != IPPROTO_TCP:
            continue
        tcp = ip[(ip[0] & 0x0F) * 4 :]
        source, destination = struct.unpack_from("!HH", tcp)
        if ip[12:16] == wanted:
            ports.add(source)
        if ip[16:20] == wanted:
            ports.add(destination)
    return ports


# --- what runs in the namespaces ---------------------------------------------------------------
WEBSOCKET_SESSION_S = 30.0
# One visitor's try while a tunnel recovers; the next try starts afresh.
SERVE_TRY_S = 1.0
DOMAIN = "relay.test"  # the relay's domain inside the namespaces (their hosts files name it)


class Certificates:
    """A trustme CA and the relay's wildcard certificate (`<domain>`, `*.<domain>`), as files."""

    def __init__(self, where: Path, domain: str = DOMAIN) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert(domain, f"*.{domain}")
        self.ca_file = where / "ca.pem"
        self.cert_file = where / "relay-cert.pem"
        self.key_file = where / "relay-key.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server.private_key_pem.write_to_path(str(self.key_file))
        server.cert_chain_pems[0].write_to_path(str(self.cert_file))
        for pem in server.cert_chain_pems[1:]:
            with open(self.cert_file, "ab") as out:
                out.write(pem.bytes())

    def client_context(self) -> ssl.SSLContext:
        """A visitor's TLS settings: this CA only, names checked."""
        return ssl.create_default_context(cafile=str(self.ca_file))


@dataclass
class NsRelay:
    """runrelay inside the relay namespace, on its veth address."""

    process: Process
    ns: Namespace
    port: int
    scheme: str
    env: dict[str, str]
    tls: ssl.SSLContext | None
    ca_file: Path | None = None  # the CA our lt is given (--ca) on https
    domain: str = DOMAIN

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.domain}:{self.port}"

    def visitor(
        self, name: str | None = None, ns: Namespace | None = None, source: str | None = None
    ) -> NsVisitor:
        """A visitor connection to the relay's address, made inside `ns` (the relay's own
        namespace unless told), over TLS when the relay serves it."""
        host = f"{name}.{self.domain}" if name else self.domain
        sock = (ns or self.ns).connect_in(self.ns.address, self.port, IO_TIMEOUT_S, source)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=host)
        return NsVisitor(sock, f"{host}:{self.port}")

    def get(
        self,
        target: str,
        name: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        ns: Namespace | None = None,
        source: str | None = None,
    ) -> Answer:
        with self.visitor(name, ns, source) as visitor:
            return visitor.request("GET", target, headers)

    def sockets(self, name: str) -> int | None:
        """The tunnel's connected pool sockets, or None when the relay does not know it."""
        answer = self.get(f"/api/tunnels/{name}/status")
        if answer.status == 404:
            return None
        assert answer.status == 200, answer
        return int(answer.json()["connected_sockets"])

    def wait_for_sockets(self, name: str, count: int, timeout: float = IO_TIMEOUT_S) -> None:
        wait_until(lambda: self.sockets(name) == count, timeout, f"{name}: {count} pool sockets")

    def serves(self, name: str, timeout: float = SERVE_TRY_S) -> bool:
        """Whether one visitor's GET /hello through the tunnel is answered 200 within
        `timeout` (a request stuck on a pool connection that went dark is a no)."""
        try:
            with self.visitor(name) as visitor:
                visitor.sock.settimeout(timeout)
                return visitor.request("GET", "/hello").status == 200
        except (TimeoutError, OSError, ssl.SSLError):
            return False

    def websocket_echo(self, name: str, messages: list[str]) -> list[str]:
        """`messages` sent one at a time to the tunnel's /ws (tests/apps/local_app.py echoes
        them), from the relay's namespace; the answers. 30 s at most for all of it."""
        host = f"{name}.{self.domain}"
        scheme = "wss" if self.tls is not None else "ws"

        async def session() -> list[str]:
            sock = self.ns.connect_in(self.ns.address, self.port, IO_TIMEOUT_S)
            sock.setblocking(False)
            async with asyncio.timeout(WEBSOCKET_SESSION_S):
                async with connect(
                    f"{scheme}://{host}:{self.port}/ws",
                    sock=sock,
                    ssl=self.tls,
                    server_hostname=host if self.tls is not None else None,
                    proxy=None,
                    open_timeout=IO_TIMEOUT_S,
                ) as ws:
                    echoes = []
                    for message in messages:
                        await ws.send(message)
                        echoes.append(str(await ws.recv()))
                    return echoes

        return asyncio.run(session())


class NsVisitor(Visitor):
    """harness.http's Visitor on a socket made elsewhere (inside a namespace, maybe TLS)."""

    def __init__(self, sock: socket.socket, host: str, timeout: float = IO_TIMEOUT_S) -> None:
        self.port = 0
        self.host = host
        self.timeout = timeout
        self.sock = sock
        self._buffer = b""
        self._eof = False


@dataclass
class NsApp:
    process: Process
    port: int


@dataclass
class NsLt:
    process: Process
    url: str
    name: str


class NetworkRun:
    """The processes of one test across a `Network`: relays in its relay namespace, local
    apps and our lt in its client namespace; `stop_all` (and `Network.close`) end them."""

    def __init__(self, network: Network, group: ProcessGroup, workdir: Path, db: Path) -> None:
        self.network = network
        self.group = group
        self.workdir = workdir
        self.template_db = db
        self.certs = Certificates(workdir)

    def relay(self, *args: str, tls: bool = True, **overrides: str) -> NsRelay:
        """runrelay in the relay namespace on its veth address, port 0, domain `DOMAIN`,
        with our certificate when `tls`; defaults but for `overrides`."""
        ns = self.network.relay
        db = self.workdir / f"relay-{uuid.uuid4().hex[:8]}.sqlite3"
        shutil.copyfile(self.template_db, db)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        env.update(RELAY_TEST_ENV, DATABASE_URL=f"sqlite:///{db}", PYTHONUNBUFFERED="1")
        env.update(overrides)
        command = [PYTHON, "manage.py", "runrelay", "--port", "0", "--bind", ns.address]
        command += ["--domain", DOMAIN]
        if tls:
            command += ["--tls-cert", str(self.certs.cert_file)]
            command += ["--tls-key", str(self.certs.key_file)]
        process = self.group.start(ns.command([*command, *args]), env, name="relay")
        match = process.wait_for_line(
            rf"tunnelsite relay listening on (https?)://{re.escape(ns.address)}:(\d+)"
        )
        context = self.certs.client_context() if tls else None
        ca_file = self.certs.ca_file if tls else None
        return NsRelay(process, ns, int(match.group(2)), match.group(1), env, context, ca_file)

    def impair(self, ns: Namespace, delay_ms: int, loss_percent: float) -> str:
        """Delay and lose `ns`'s egress on the link like `tc ... netem delay DELAY_MS loss
        LOSS%`: with netem itself, or, on a kernel without it, with tests/apps/wan.py holding
        the packets in an NFQUEUE. Says which."""
        if ns.netem(delay_ms, loss_percent):
            return "tc netem"
        wan = [PYTHON, str(WAN_APP), str(WAN_QUEUE), str(delay_ms), str(loss_percent)]
        process = self.group.start(ns.command(wan), {**os.environ}, "wan")
        process.wait_for_line(rf"wan queue {WAN_QUEUE} ready")
        queue = ["--queue-num", str(WAN_QUEUE)]
        ns.run([IPTABLES, "-A", "OUTPUT", "-o", ns.device, "-j", "NFQUEUE", *queue])
        return "NFQUEUE delay and loss (tests/apps/wan.py: this kernel has no sch_netem)"

    def relay_as_documented(self, env: dict[str, str], ns: Namespace | None = None) -> Process:
        """`manage.py runrelay` with only the environment `env` (a deploy guide's command),
        in `ns` (the relay namespace), running once it listens."""
        db = self.workdir / f"relay-{uuid.uuid4().hex[:8]}.sqlite3"
        shutil.copyfile(self.template_db, db)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        environ.update(RELAY_TEST_ENV, DATABASE_URL=f"sqlite:///{db}", PYTHONUNBUFFERED="1")
        environ.update(env)
        command = (ns or self.network.relay).command([PYTHON, "manage.py", "runrelay"])
        process = self.group.start(command, environ, name="relay")
        process.wait_for_line(r"tunnelsite relay listening on")
        return process

    def capture(self, ns: Namespace, pcap: Path) -> Process:
        """tcpdump on `ns`'s end of the link, every byte of every packet into `pcap`, each
        written as it comes (-U); running once it says it listens. Stop it to read the file."""
        args = [
            TCPDUMP,
            "-i",
            ns.device,
            "-n",
            "-s",
            "0",
            "-U",
            "--immediate-mode",
            "-w",
            str(pcap),
        ]
        process = self.group.start(ns.command(args), {**os.environ}, "tcpdump")
        process.wait_for_line(rf"listening on {re.escape(ns.device)}")
        return process

    def app(self) -> NsApp:
        """tests/apps/local_app.py on the client namespace's loopback."""
        process = self.group.start(
            self.network.client.command([PYTHON, str(LOCAL_APP)]), {**os.environ}, "local_app"
        )
        match = process.wait_for_line(r"local app listening on http://127\.0\.0\.1:(\d+)")
        return NsApp(process, int(match.group(1)))

    def lt_process(
        self, relay: NsRelay, app: NsApp, *extra: str, env: dict[str, str] | None = None
    ) -> Process:
        environ = client_env(LT_CONFIG_DIR=str(self.workdir / "lt-config"), PYTHONUNBUFFERED="1")
        environ.update(env or {})
        args = [PYTHON, "-m", "tunnelsite_client.cli", "--port", str(app.port), "--host", relay.url]
        if relay.ca_file is not None:
            args += ["--ca", str(relay.ca_file)]
        return self.group.start(self.network.client.command([*args, *extra]), environ, "our lt")

    def lt(
        self, relay: NsRelay, app: NsApp, *extra: str, env: dict[str, str] | None = None
    ) -> NsLt:
        """Our lt in the client namespace (`--ca` our CA on https), once every pool
        connection is up."""
        process = self.lt_process(relay, app, *extra, env=env)
        url = process.wait_for_line(r"your url is: (\S+)").group(1)
        name = re.match(r"https?://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
        relay.wait_for_sockets(name, DEFAULT_MAX_SOCKETS)
        return NsLt(process, url, name)
