"""A node's pool URL with TLS at the balancer (review finding 6): docs/cluster.md's example
environment, started as documented (addresses, ports, the database and the key file changed),
sends our lt to its RELAY_NODE_URL; without RELAY_NODE_URL such a node refuses to start in one
line, since the default, https:// + the advertised address, is the node's plain-http port."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from harness.http import Visitor
from harness.processes import PYTHON, ROOT
from harness.relay import free_port, issue_token

pytestmark = pytest.mark.timeout(120)

DOCS = ROOT / "docs" / "cluster.md"
FENCE = re.compile(r"```sh[^\n]*\n(# on 10\.0\.0\.11.*?)```", re.DOTALL)
START_S = 60  # a node's start (migrations are done: it only checks and listens)


def documented() -> tuple[dict[str, str], list[str]]:
    """The example's variables and runrelay's arguments, as docs/cluster.md writes them."""
    match = FENCE.search(DOCS.read_text())
    assert match is not None, "docs/cluster.md lost its example node"
    words = shlex.split(match.group(1), comments=True)
    variables = dict(word.split("=", 1) for word in words if re.match(r"[A-Z_]+=", word))
    return variables, words[words.index("runrelay") + 1 :]


def node_env(cluster, tmp_path: Path, variables: dict[str, str]) -> dict[str, str]:
    key = tmp_path / "key"
    key.write_text("a-cluster-test-key-" + "x" * 40)
    here = {
        "SECRET_KEY_FILE": str(key),
        "DATABASE_URL": cluster.db_url,
        "REDIS_URL": cluster.redis_url,
        "RELAY_BIND": "127.0.0.1",
    }
    env = {k: v for k, v in cluster.env().items() if not k.startswith("RELAY_")}
    env.pop("SECRET_KEY", None)
    env.pop("DEBUG", None)
    return {**env, **variables, **here}


def node_args(args: list[str], port: int) -> list[str]:
    changed = [f"127.0.0.1:{port}" if re.fullmatch(r"10\.0\.0\.\d+:\d+", a) else a for a in args]
    return [PYTHON, "manage.py", "runrelay", *changed, "--port", str(port)]


def test_the_documented_node_sends_our_lt_to_its_node_url(cluster, tmp_path):
    variables, args = documented()
    assert variables["RELAY_PUBLIC_SCHEME"] == "https" and variables["RELAY_NODE_URL"]
    port = free_port()
    env = node_env(cluster, tmp_path, variables)
    process = cluster.group.start(node_args(args, port), env, name="documented node")
    process.wait_for_line(r"listening on http://127\.0\.0\.1:\d+", timeout=START_S)
    token = issue_token(SimpleNamespace(env=env), "node-url-user", "laptop")  # DEBUG=false
    with Visitor(port, variables["RELAY_DOMAIN"]) as visitor:
        answer = visitor.request(
            "GET",
            "/?new",
            [
                ("User-Agent", "tunnelsite-lt/0.1"),
                ("X-Tunnelsite-Client", "node-url-0001"),
                ("X-Tunnelsite-Pool", "upgrade"),
                ("Authorization", f"Bearer {token}"),
            ],
        )
    assert answer.status == 200, answer
    body = answer.json()
    assert body["pool_url"] == f"{variables['RELAY_NODE_URL']}/api/tunnels/{body['id']}/pool"


def test_a_node_with_https_and_no_node_url_refuses_to_start_in_one_line(cluster, tmp_path):
    variables, args = documented()
    del variables["RELAY_NODE_URL"]
    env = node_env(cluster, tmp_path, variables)
    done = subprocess.run(
        node_args(args, free_port()),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "RELAY_PUBLIC_SCHEME=https needs RELAY_NODE_URL" in output, output
    assert "Traceback" not in output and "listening on" not in output
