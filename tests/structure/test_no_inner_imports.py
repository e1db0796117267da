"""No imports inside functions in the server or the client: an import hidden in a function
is how a module cycle hides from import-linter's eyes and from a reader's. The few that must
stay are listed here, each with its reason; a new one fails until it is moved to the top of
its module (or argued for here)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("relay", "tunnels", "tunnelsite", "client/tunnelsite_client")

# (file, function, imported module) -> why it stays inside the function
ALLOWED = {
    ("tunnels/apps.py", "ready", "relay"): (
        "AppConfig.ready: installs the ORM records into the relay once Django's app registry "
        "is ready (tunnels.records imports the models, which cannot load earlier)"
    ),
    ("tunnels/apps.py", "ready", "tunnels.records"): "AppConfig.ready: as above",
    ("tunnels/apps.py", "ready", "tunnels"): (
        "AppConfig.ready: tunnels.signin connects its user_logged_out receiver (it imports "
        "the models, which cannot load earlier)"
    ),
    ("relay/run/loop.py", "install", "uvloop"): (
        "RELAY_UVLOOP=false must not import uvloop at all (the operator's way around it)"
    ),
    ("client/tunnelsite_client/event_loop.py", "loop_factory", "uvloop"): (
        "LT_UVLOOP=false must not import uvloop at all (as the relay's RELAY_UVLOOP)"
    ),
    ("client/tunnelsite_client/config.py", "config_dir", "platformdirs"): (
        "the client's (another engineer's part of issue 11): only needed without "
        "LT_CONFIG_DIR; left as found"
    ),
    ("client/tunnelsite_client/display.py", "start", "rich.live"): (
        "the client's: rich is imported only for the live terminal block; left as found"
    ),
    ("client/tunnelsite_client/display.py", "_render", "rich.table"): "the client's: as above",
    ("client/tunnelsite_client/display.py", "_render", "rich.text"): "the client's: as above",
}


def inner_imports() -> set[tuple[str, str, str]]:
    found = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for function in ast.walk(tree):
                if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(function):
                    if isinstance(node, ast.Import):
                        modules = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        modules = [node.module or "."]
                    else:
                        continue
                    where = path.relative_to(ROOT).as_posix()
                    found.update((where, function.name, module) for module in modules)
    return found


def test_no_module_imports_inside_a_function_unless_listed_with_its_reason() -> None:
    unexpected = sorted(inner_imports() - ALLOWED.keys())
    assert not unexpected, (
        "imports inside functions (move them to the top of the module; a cycle is fixed "
        f"by a third module both use): {unexpected}"
    )


def test_every_listed_exception_still_exists() -> None:
    stale = sorted(ALLOWED.keys() - inner_imports())
    assert not stale, f"allow-list entries that no longer match an import: {stale}"
