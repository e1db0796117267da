"""Nothing the client's readers see still names the client by its old importable name: the
library was `client` (its logger too, its files client/cli.py and the like) and is
`tunnelsite_client` now (docs/client.md: Moving from `client`). A stale mention sends a reader
to a module, logger or command that does not exist.

Searched: the client's sources and README, the docs and the repository's README. The one place
that must name the old package, docs/client.md's "Moving from `client`", is left out.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
MODULES = {path.stem for path in (CLIENT / "tunnelsite_client").glob("*.py")}
MIGRATION = re.compile(r"^### Moving from `client`\n.*?(?=^#)", re.M | re.S)

OLD_NAME = re.compile(
    r"\bfrom client(?:\.\w+)? import\b"  # from client import open_tunnel
    r"|\bimport client\b(?!\w)"
    r"|-m client\b"  # python -m client, python -m client.cli
    r"|`client` logger|logger `client`|getLogger\([\"']client[\"']\)"
    r"|(?<![\w/.])client/(\w+)\.py\b"  # client/cli.py: the package's files were there
    r"|\.\[client\]"  # pip install '.[client]': the server's extra, gone
)


def texts() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        CLIENT / "README.md",
        CLIENT / "pyproject.toml",
        *sorted((CLIENT / "tunnelsite_client").glob("*.py")),
    ]


def stale(text: str) -> list[str]:
    """Each mention of the old name or an old path in `text`."""
    found = []
    for match in OLD_NAME.finditer(text):
        if match.group(1) is not None and match.group(1) not in MODULES:
            continue  # client/<something>.py that was never the package's (no such module)
        found.append(match.group(0))
    return found


def test_the_client_docs_and_sources_name_only_tunnelsite_client() -> None:
    found = {}
    for path in texts():
        text = path.read_text()
        if path == ROOT / "docs" / "client.md":
            text = MIGRATION.sub("", text)
        if mentions := stale(text):
            found[str(path.relative_to(ROOT))] = mentions
    assert found == {}, "the client is tunnelsite_client now: " + repr(found)


def test_it_finds_the_old_names_it_is_about() -> None:
    for old in (
        "from client import open_tunnel",
        "import client",
        "python -m client --port 3000",
        "state changes go to the `client` logger",
        'logging.getLogger("client")',
        "see client/cli.py",
        "pip install '.[client]'",
    ):
        assert stale(old), old
    for current in (
        "from tunnelsite_client import open_tunnel",
        "python -m tunnelsite_client.cli",
        "the `tunnelsite_client` logger",
        "client/tunnelsite_client/cli.py",
        "tests/client/test_lt_login_device.py",
        "client/pyproject.toml",
    ):
        assert not stale(current), current


def test_the_migration_section_is_where_it_is_left_out() -> None:
    section = MIGRATION.search((ROOT / "docs" / "client.md").read_text())
    assert section is not None and "from client import" in section.group(0)
