"""docs/settings.md lists exactly the environment variables tunnelsite/settings.py reads.

settings.py reads each variable by name, as a string literal passed to `env.<type>(...)` or
to one of its readers (`_int`, `_bool`, ...); the page names each in the first column of a
table, in backticks. Either side gaining a name the other lacks fails here.
"""

from __future__ import annotations

import ast
import re

from .markdown import DOCS, ROOT

SETTINGS = ROOT / "tunnelsite" / "settings.py"
PAGE = DOCS / "settings.md"
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]")
# Read without being named in settings.py: django-environ's FileAwareEnv reads NAME_FILE for
# any NAME it is asked for; the page lists the one an operator needs.
READ_IMPLICITLY = {"SECRET_KEY_FILE"}


def read_by_settings() -> set[str]:
    """Names of the environment variables settings.py reads."""
    found = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        reader = (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "env"
        ) or (isinstance(func, ast.Name) and func.id.startswith("_"))
        first = node.args[0]
        if reader and isinstance(first, ast.Constant) and isinstance(first.value, str):
            if VARIABLE.fullmatch(first.value):
                found.add(first.value)
    return found


def listed_on_page() -> set[str]:
    """Names in backticks in the first column of the page's tables."""
    found = set()
    for line in PAGE.read_text().splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            found |= {n for n in re.findall(r"`([^`]+)`", first_column) if VARIABLE.fullmatch(n)}
    return found


def test_the_page_lists_every_variable_settings_reads() -> None:
    missing = read_by_settings() - listed_on_page()
    assert not missing, f"docs/settings.md does not list: {sorted(missing)}"


def test_the_page_lists_no_variable_settings_does_not_read() -> None:
    extra = listed_on_page() - read_by_settings() - READ_IMPLICITLY
    assert not extra, f"docs/settings.md lists what settings.py never reads: {sorted(extra)}"


def test_the_rule_sees_relay_and_django_settings() -> None:
    read = read_by_settings()
    assert {"RELAY_GRACE_S", "RELAY_SPARE_SOCKETS", "RELAY_WS_SPARE_SOCKETS"} <= read, read
    assert {"DEBUG", "DATABASE_URL", "SECURE_HSTS_SECONDS", "ALLOWED_HOSTS"} <= read, read
    assert len([n for n in read if n.startswith("RELAY_")]) > 40, read
