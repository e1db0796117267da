"""Every limit of the client lives in tunnelsite_client/limits.py with its reason: no bare numbers.

An AST walk over client/ fails on a numeric literal other than 0, 1, -1 and 2 outside
limits.py, unless the allow-list below names the module, the value and why it is not a
limit (a protocol's vocabulary, a unit, a documented exit code). The allow-list must stay
exact: an entry no longer used fails too, so it cannot rot into a blanket permission.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tunnelsite_client import limits

CLIENT = Path(__file__).resolve().parents[2] / "client" / "tunnelsite_client"
LIMITS_MODULE = "limits.py"
ALWAYS_FINE = {0, 1, -1, 2}  # counting, halves and doubles, the first and last

_HTTP = "an HTTP status code or status-class bound (RFC 9110): vocabulary, not a limit"
_PORTS = "one past the highest TCP port: a range check, not a limit"
ALLOWED: dict[tuple[str, int | float], str] = {
    **{("cli.py", s): _HTTP for s in (300, 401, 403, 409, 429)},
    **{
        ("cli.py", code): "an exit code the command documents (cli.py, README)"
        for code in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 130)
    },
    **{("registration.py", s): _HTTP for s in (200, 300, 400, 600)},
    **{("tunnel.py", s): _HTTP for s in (200, 300, 400, 408, 429, 500)},
    **{("target.py", s): _HTTP for s in (502, 504)},
    ("local_side.py", 502): _HTTP,
    ("arguments.py", 65536): _PORTS,
    ("registration.py", 65536): _PORTS,
    **{("pool_upgrade.py", s): _HTTP for s in (101, 401, 404)},
    ("pool_upgrade.py", 80): "the default port of http:// URLs",
    ("pool_upgrade.py", 443): "the default port of https:// URLs",
    ("http.py", 80): "the default port of http:// URLs",
    **{("connect.py", s): _HTTP for s in (200, 400, 500)},
    ("connect.py", 80): "the default port of an http:// proxy URL (as curl and requests)",
    ("http.py", 443): "the default port of https:// URLs",
    ("target.py", 80): "the default port of a local target given no port (HTTP's)",
    ("config.py", 0o600): "file mode: the saved login is readable by its owner only",
    ("config.py", 0o700): "directory mode: the config directory is its owner's only",
    ("display.py", 1000): "milliseconds per second (a unit, for the request line)",
}


def bare_numbers(source: str) -> list[tuple[int, int | float]]:
    """(line, value) of every numeric literal in `source` that is not always fine. A
    negative number is one literal (`-5` counts as -5, not 5)."""
    tree = ast.parse(source)
    negated: set[int] = set()
    found: list[tuple[int, int | float]] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and _is_number(node.operand.value)
        ):
            negated.add(id(node.operand))
            value = -node.operand.value
            if value not in ALWAYS_FINE:
                found.append((node.lineno, value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and _is_number(node.value) and id(node) not in negated:
            if node.value not in ALWAYS_FINE:
                found.append((node.lineno, node.value))
    return found


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | complex) and not isinstance(value, bool)


def _modules() -> list[Path]:
    return sorted(p for p in CLIENT.glob("*.py") if p.name != LIMITS_MODULE)


def test_the_checker_finds_a_bare_timeout_and_a_negative_one():
    source = (
        "import asyncio\nasync def f():\n    async with asyncio.timeout(7.5):\n        x = -3\n"
    )
    assert sorted(bare_numbers(source)) == [(3, 7.5), (4, -3)]
    assert bare_numbers("x = [0, 1, -1, 2, True]\n") == []


def test_no_client_module_but_limits_holds_an_unexplained_number():
    unexplained = [
        f"client/{path.name}:{line}: {value!r}"
        for path in _modules()
        for line, value in bare_numbers(path.read_text())
        if (path.name, value) not in ALLOWED
    ]
    assert unexplained == [], "move these to client/tunnelsite_client/limits.py with a reason"


def test_every_allow_list_entry_is_still_needed():
    used = {
        (path.name, value) for path in _modules() for _, value in bare_numbers(path.read_text())
    }
    assert sorted(set(ALLOWED) - used, key=str) == []


@pytest.mark.parametrize("name", [name for name in vars(limits) if name.isupper()])
def test_each_limit_has_its_reason_in_a_comment(name):
    """A comment above the constant, or above the run of constants it belongs to."""
    source = (CLIENT / LIMITS_MODULE).read_text().splitlines()
    line = next(i for i, text in enumerate(source) if text.startswith(f"{name} ="))
    while line > 0 and re.match(r"^[A-Z_]+ = ", source[line - 1]):
        line -= 1  # one comment may explain a group (the TCP keepalive trio)
    assert line > 0 and source[line - 1].startswith("#"), f"{name} has no comment saying why"
