"""On PostgreSQL, nodes with different names share the database, but a second process with
the same node name, or a relay without one (it closes every live session at start), is
refused in one line instead of closing the running node's sessions."""

from __future__ import annotations

import subprocess

from harness.processes import ROOT
from harness.relay import RELAY_COMMAND
from harness.waiting import unique_name

START_S = 30


def refused(cluster, *extra: str) -> str:
    """Run a relay expected to be refused; its one stderr line."""
    done = subprocess.run(
        [*RELAY_COMMAND, *extra],
        cwd=ROOT,
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=START_S,
    )
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_second_node_with_a_taken_name_is_refused_and_closes_nothing(cluster, db_rows):
    node = cluster.start("solo")
    name = unique_name("solo")
    assert node.register(name).status == 200
    assert db_rows(name) == [("solo", True, "")]

    line = refused(cluster, "--node-name", "solo")

    assert "another relay is already running as node solo" in line
    assert db_rows(name) == [("solo", True, "")]
    assert node.register(unique_name("after")).status == 200


def test_a_relay_without_a_node_name_is_refused_next_to_nodes(cluster, db_rows):
    node = cluster.start("neighbour")
    name = unique_name("nb")
    assert node.register(name).status == 200

    line = refused(cluster)

    assert "must each have their own RELAY_NODE_NAME" in line
    assert db_rows(name) == [("neighbour", True, "")]
