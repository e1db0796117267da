"""A tunnel's requests and bytes are added to only by `Tunnel.carried` and
`Tunnel.carried_request` (relay/pool/tunnel.py): an exchange still running when its tunnel
closes counts after /metrics kept the closed tunnel's totals, and only those methods pass
such traffic on to its plan's totals (relay/stats.py). A `tunnel.bytes_out += n` elsewhere
lost it (review finding 4 of issue 16: relay/proxy/http.py, ws_bridge.py, replay.py and
relay/pool/tcp_visitor.py all did). So any write to an attribute called `requests`,
`bytes_in` or `bytes_out` outside tunnel.py fails here, unless its object is listed below
with the reason it is not a tunnel; a decrement fails anywhere, since a counter never
goes down."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("relay", "tunnels", "tunnelsite")
COUNTERS = frozenset({"requests", "bytes_in", "bytes_out"})
METHODS = "relay/pool/tunnel.py"

# (file, the written object's expression) -> why it is not a tunnel's counter
NOT_A_TUNNEL = {
    ("relay/stats.py", "closed"): "a plan's closed totals (stats.Closed), fed by the methods",
    ("relay/metrics.py", "row"): "a scrape's sum of the live tunnels per plan (_PlanRow)",
    ("relay/pool/tcp_visitor.py", "self"): "one TCP visitor's own bytes, for its log line",
    ("relay/pool/captures.py", "self"): "a capture's list of requests, not a count",
    ("relay/cluster/peer_proxy.py", "self"): (
        "a forwarding node's tally of a WebSocket (HopTally): the owner node counts the tunnel's"
    ),
}


def writes() -> list[tuple[str, int, str, str, bool]]:
    """(file, line, object, attribute, whether it subtracts) of every write to a counter."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            where = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.AugAssign):
                    targets = [node.target]
                    down = isinstance(node.op, ast.Sub)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    down = False
                else:
                    continue
                for target in targets:
                    if isinstance(target, ast.Attribute) and target.attr in COUNTERS:
                        obj = ast.unparse(target.value)
                        found.append((where, node.lineno, obj, target.attr, down))
    return found


def test_only_the_tunnels_methods_add_to_its_requests_and_bytes() -> None:
    outside = [
        f"{where}:{line}: {obj}.{attr}"
        for where, line, obj, attr, _ in writes()
        if where != METHODS and (where, obj) not in NOT_A_TUNNEL
    ]
    assert not outside, (
        "a tunnel's traffic counted directly; call tunnel.carried(bytes_in, bytes_out) or "
        "tunnel.carried_request() instead (or, if it is no tunnel, say why in NOT_A_TUNNEL):\n"
        + "\n".join(outside)
    )


def test_no_counter_is_ever_decremented() -> None:
    down = [f"{where}:{line}: {obj}.{attr} -=" for where, line, obj, attr, sub in writes() if sub]
    assert not down, "a counter went down (a scrape between the two reads it as a reset):\n" + (
        "\n".join(down)
    )


def test_every_exception_is_still_a_write_somewhere() -> None:
    """An entry that no longer matches a write is dropped, so the list cannot rot."""
    seen = {(where, obj) for where, _, obj, _, _ in writes()}
    assert set(NOT_A_TUNNEL) <= seen, set(NOT_A_TUNNEL) - seen
