"""TCP tunnels on two nodes behind a real HAProxy in TCP mode (docs/cluster.md, "TCP tunnels on
a cluster"): each node has its own RELAY_TCP_PORTS range, the balancer forwards each range to
its node, `lt tcp` registers through the balancer and lands on some node, and a visitor who
connects to the balancer's port reaches that node's tunnel and the app.

The balancer's configuration is the documented one, its addresses and ranges replaced by
loopback ones (HAProxy listens on 127.0.0.1, alpha's ports on 127.0.0.2, bravo's on
127.0.0.3, so the same port numbers do not collide on one machine), plus an http frontend
for registrations. The nodes share a fresh PostgreSQL database and this worker's Redis index,
as in tests/cluster (they fail, never skip, without them)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from harness import pg
from harness.processes import ROOT, ProcessGroup
from harness.redis_index import redis_index
from harness.relay import RELAY_COMMAND, RELAY_TEST_ENV, free_port
from harness.tcp_tunnels import LtTcp, LtTcpLauncher, free_port_range, make_users
from harness.waiting import wait_until

from bench.tcp_transfer import IO_TIMEOUT_S, connect, upload

pytestmark = pytest.mark.timeout(120)

REDIS_BASE = os.environ.get("TUNNELSITE_TEST_REDIS", "redis://127.0.0.1:6379")
SECRET_KEY = "tcp-two-nodes-tests-only-secret-key-0123456789-abcdefghijklmnop"
DOCS = ROOT / "docs" / "cluster.md"
SECTION = "## TCP tunnels on a cluster"
# The documented example's addresses and ranges: (alpha, bravo).
DOC_ADDRESSES = ("10.0.0.11", "10.0.0.12")
DOC_RANGES = ("20000-20999", "21000-21999")
NODE_BINDS = ("127.0.0.2", "127.0.0.3")
BALANCER_NETWORK = "127.0.0.1/32"  # where HAProxy's connections to the nodes come from
VISITOR_ADDRESS = "127.0.0.5"  # a visitor's own address, which only the PROXY header carries
RANGE_WIDTH = 4
TUNNELS_TRIED = 4  # registrations until both nodes own one (round robin: two suffice)


@dataclass
class Node:
    name: str
    port: int
    tcp_range: tuple[int, int]

    def owns(self, port: int) -> bool:
        return self.tcp_range[0] <= port <= self.tcp_range[1]


def documented_config() -> str:
    """The ```haproxy fences of the docs' TCP section, together: the TCP ranges, and the
    registrations' frontend that sends a reserved port to its node."""
    text = DOCS.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ")]
    fences = re.findall(r"^```haproxy\n(.*?)^```", section, re.M | re.S)
    assert len(fences) == 2, f"two haproxy examples under {SECTION!r} in {DOCS}"
    return "\n".join(fences)


def balancer_config(http_port: int, nodes: list[Node]) -> str:
    """The documented configuration on loopback: HAProxy's registrations on `http_port`,
    its TCP ranges on 127.0.0.1, each node's ports on its own loopback address."""
    config = documented_config()
    assert "bind :80\n" in config
    config = config.replace("bind :80\n", f"bind 127.0.0.1:{http_port}\n")
    for node, address, doc_range, bind in zip(
        nodes, DOC_ADDRESSES, DOC_RANGES, NODE_BINDS, strict=True
    ):
        low, high = node.tcp_range
        replacements = {
            f"{address}:8080\n": f"127.0.0.1:{node.port}\n",  # its http port
            f" {address} send-proxy\n": f" {bind} send-proxy\n",  # its TCP ports, same port
            f"bind :{doc_range}\n": f"bind 127.0.0.1:{low}-{high}\n",
            f"-m int {doc_range.replace('-', ':')} ": f"-m int {low}:{high} ",
        }
        for old, new in replacements.items():
            assert old in config, f"{old!r} is not in the documented configuration"
            config = config.replace(old, new)
    return config


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    """A fresh, migrated PostgreSQL database and a flushed Redis index: the nodes' env."""
    name, db_url, _ = pg.fresh_database("tunnelsite_tcp")
    try:
        client = redis.Redis.from_url(f"{REDIS_BASE}/{redis_index('cluster')}", socket_timeout=5)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        pg.drop_database(name)
        pytest.fail(f"Redis at {REDIS_BASE} is required: {exc}")
    env = {
        **os.environ,
        **RELAY_TEST_ENV,
        "DATABASE_URL": db_url,
        "REDIS_URL": f"{REDIS_BASE}/{redis_index('cluster')}",
        "SECRET_KEY": SECRET_KEY,  # a node refuses the development key
        "PYTHONUNBUFFERED": "1",
    }
    try:
        yield env
    finally:
        pg.drop_database(name)


@pytest.fixture(scope="module")
def nodes(module_group: ProcessGroup, services: dict[str, str]) -> list[Node]:
    started = []
    for name, bind in zip(("alpha", "bravo"), NODE_BINDS, strict=True):
        tcp_ports = free_port_range(RANGE_WIDTH)
        env = {
            **services,
            "RELAY_TCP_PORTS": tcp_ports,
            "RELAY_TCP_BIND": bind,
            "RELAY_TCP_HOST": "127.0.0.1",  # the balancer
            "RELAY_TCP_PROXY_PROTOCOL": BALANCER_NETWORK,  # its PROXY headers are believed
        }
        process = module_group.start(
            [*RELAY_COMMAND, "--node-name", name], env, name=f"node-{name}"
        )
        port = int(process.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        low, high = map(int, tcp_ports.split("-"))
        started.append(Node(name, port, (low, high)))
    return started


@pytest.fixture(scope="module")
def balancer(
    module_group: ProcessGroup, nodes: list[Node], tmp_path_factory: pytest.TempPathFactory
) -> int:
    """HAProxy with the documented TCP part; its http port (registrations)."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        pytest.fail("haproxy is not installed; `make test` installs it")
    http_port = free_port()
    config = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    config.write_text(balancer_config(http_port, nodes))
    process = module_group.start(
        [haproxy, "-db", "-f", str(config)], {**os.environ}, name="haproxy"
    )

    def answers() -> bool:
        try:
            connect(http_port, timeout=1).close()
        except OSError:
            assert process.proc.poll() is None, process.output()
            return False
        return True

    wait_until(answers, 10, "HAProxy to listen")
    return http_port


def test_a_tunnel_registered_through_the_balancer_is_reached_through_it_on_either_node(
    lt_tcp: LtTcpLauncher,
    balancer: int,
    nodes: list[Node],
    services: dict[str, str],
    tcp_app: int,
) -> None:
    tokens = make_users(services, {f"cluster-{i}": [] for i in range(TUNNELS_TRIED)})
    tunnels: list[LtTcp] = []
    owners: set[str] = set()
    try:
        for token in tokens.values():
            lt = lt_tcp(f"http://127.0.0.1:{balancer}", tcp_app, "--token", token)
            tunnels.append(lt)
            (owner,) = [node for node in nodes if node.owns(lt.port)]
            assert lt.host == "127.0.0.1"  # RELAY_TCP_HOST: the balancer
            result = upload(lt.port, 256 * 1024, host=lt.host)
            assert result.sha256_ok, f"a visitor through the balancer missed {owner.name}"
            owners.add(owner.name)
            if len(owners) == len(nodes):
                break
        assert owners == {"alpha", "bravo"}, f"the balancer gave every tunnel to {owners}"
    finally:
        for lt in tunnels:
            lt.process.stop()


def test_a_reserved_port_registers_on_the_node_whose_range_holds_it(
    lt_tcp: LtTcpLauncher,
    balancer: int,
    nodes: list[Node],
    services: dict[str, str],
    tcp_app: int,
) -> None:
    # Twice each way round: a balancer that ignored the port would send one of each pair
    # to the wrong node, which refuses a port outside its range.
    wanted = [node.tcp_range[1] for node in nodes] * 2
    users = {f"reserver-{i}": [port] for i, port in enumerate(wanted[: len(nodes)])}
    tokens = list(make_users(services, users).values()) * 2
    for token, port in zip(tokens, wanted, strict=True):
        lt = lt_tcp(
            f"http://127.0.0.1:{balancer}", tcp_app, "--token", token, "--remote-port", str(port)
        )
        try:
            assert lt.port == port
            assert upload(port, 1000, host=lt.host).sha256_ok
        finally:
            lt.process.stop()


def visit_from(source: str, port: int) -> bytes:
    """An ECHO through the balancer from `source`: what came back (b"" when closed)."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=IO_TIMEOUT_S, source_address=(source, 0)
    ) as sock:
        try:
            sock.sendall(b"ECHO\nhello")
            return sock.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_the_node_sees_the_visitors_own_address_through_the_balancer(
    lt_tcp: LtTcpLauncher, balancer: int, services: dict[str, str], tcp_app: int
) -> None:
    # HAProxy connects to the node from 127.0.0.1 whoever the visitor is; the PROXY header
    # (send-proxy) names the visitor, and the tunnel's CIDR rule and lt's log see it.
    (token,) = make_users(services, {"cidr": []}).values()
    lt = lt_tcp(
        f"http://127.0.0.1:{balancer}",
        tcp_app,
        "--token",
        token,
        "--cidr-allow",
        f"{VISITOR_ADDRESS}/32",
        "--print-requests",
    )
    try:
        assert visit_from(VISITOR_ADDRESS, lt.port) == b"hello"
        lt.process.wait_for_line(rf"visitor {re.escape(VISITOR_ADDRESS)}:\d+ ")
        assert visit_from("127.0.0.1", lt.port) == b"", "the balancer's address was let in"
    finally:
        lt.process.stop()


def test_the_balancers_config_is_the_documented_one_and_haproxy_accepts_it(
    tmp_path: Path,
) -> None:
    fake = [Node("alpha", 1, (25000, 25003)), Node("bravo", 2, (25010, 25013))]
    config = balancer_config(18080, fake)
    expected = ("bind 127.0.0.1:25000-25003", "server alpha 127.0.0.2 send-proxy")
    for line in (*expected, "server bravo 127.0.0.3 send-proxy", "-m int 25010:25013 "):
        assert line in config
    (tmp_path / "haproxy.cfg").write_text(config)
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin") or "haproxy"
    done = subprocess.run(
        [haproxy, "-c", "-q", "-f", str(tmp_path / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
