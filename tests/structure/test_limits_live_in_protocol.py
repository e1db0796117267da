"""Every limit and timeout of the relay lives in relay/protocol.py, named, with the reason
for its value: a bare number elsewhere in relay/ fails here. What may stay is what is not
a choice: the integers 0, 1, -1 and 2 (and 0.0; a float such as 1.0 s is a deadline someone
chose); HTTP status codes where they are used (never assigned to a name: a name for a number
belongs in protocol.py); WebSocket close codes in the modules that speak WebSocket; and the
few numbers listed below, each with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELAY = ROOT / "relay"
TRIVIAL = {0, 1, -1, 2}  # as ints: 1.0 or 2.0 seconds is a choice of deadline, 0.0 is not
# Modules that speak WebSocket and so use close codes (RFC 6455 section 7.4).
WEBSOCKET_MODULES = {
    "relay/proxy/websocket.py",
    "relay/proxy/ws_bridge.py",
    "relay/cluster/peer_proxy.py",
    "relay/cluster/forward.py",
    "relay/edge/routing.py",
}
# (file, value) -> why the bare number is right where it is
ALLOWED = {
    ("relay/access_log.py", 1000): "milliseconds in a second: the access log's durations",
    ("relay/access_log.py", 0x3001): "one past U+3000, Unicode's last white space character",
    ("relay/address.py", 443): "HTTPS's own port, which URLs leave out",
    ("relay/pool/quota.py", 10): "a size shows one decimal under 10 units (tunnels/sizes.py)",
    ("relay/pool/quota.py", 0.5): "rounding half up, as the inspector's Math.round does",
    ("relay/headers.py", 128): "the bits of an IPv6 address: a /128 prefix is one address",
    ("relay/management/commands/benchrelay.py", 20): "MiB to bytes (`<< 20`)",
    ("relay/proxy/exchange.py", 4): "': ' and CRLF around a header line, as on the wire",
    ("relay/pool/quota.py", 1.0): "one token of a registration bucket: a registration costs one",
    ("relay/pool/quota.py", 1024): "bytes in a KiB: the binary units a refusal names sizes in",
    ("relay/traffic.py", 60): "seconds in a minute: the history's minutes start on the minute",
}
ASSIGNMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign)


def numbers_in(source: str, where: str) -> set[tuple[str, int, float]]:
    """The bare numbers of one module's `source` (at `where`, relative to the repository)."""
    tree = ast.parse(source, filename=where)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or type(node.value) not in (int, float):
            continue
        value = node.value
        trivial = value in TRIVIAL if isinstance(value, int) else value == 0.0
        if trivial or (where, value) in ALLOWED:
            continue
        used = not isinstance(parents.get(node), ASSIGNMENTS)
        if used and isinstance(value, int) and 100 <= value <= 600:
            continue  # an HTTP status code (600: the end of their range)
        if where in WEBSOCKET_MODULES and isinstance(value, int) and 1000 <= value <= 5000:
            continue  # a WebSocket close code (5000: the end of their range)
        found.add((where, node.lineno, value))
    return found


def bare_numbers() -> set[tuple[str, int, float]]:
    found = set()
    for path in sorted(RELAY.rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if where != "relay/protocol.py":
            found |= numbers_in(path.read_text(), where)
    return found


def test_no_bare_number_in_relay_outside_protocol_py() -> None:
    found = sorted(bare_numbers())
    assert not found, (
        "name these in relay/protocol.py with the reason for their value (or, if the number "
        f"is not a choice, list it in ALLOWED with why): {found}"
    )


def test_every_allowed_number_is_still_there() -> None:
    present = set()
    for where, value in ALLOWED:
        tree = ast.parse((ROOT / where).read_text())
        if any(isinstance(n, ast.Constant) and n.value == value for n in ast.walk(tree)):
            present.add((where, value))
    assert present == set(ALLOWED), f"stale entries: {sorted(set(ALLOWED) - present)}"


def test_the_rule_catches_a_named_limit_but_not_a_status_sent() -> None:
    source = (
        "READ_HIGH_WATER = 1024 * 1024\n"
        "PRUNE_BATCH = 500\n"
        "await send_error(scope, send, 503, 'busy', retry_after=5)\n"
        "await send({'type': 'websocket.close', 'code': 1008})\n"
    )
    found = numbers_in(source, "relay/pool/example.py")
    assert {(line, value) for _, line, value in found} == {(1, 1024), (2, 500), (3, 5), (4, 1008)}
    in_websocket_module = numbers_in(source, "relay/proxy/websocket.py")
    assert (4, 1008) not in {(line, value) for _, line, value in in_websocket_module}
