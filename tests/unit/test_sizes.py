"""One size formatter per language: tunnels/sizes.binary (Python) and inspector.js's `size`
say the same thing for the same count (run in Node, which make test installs)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tunnels.sizes import binary

COUNTS = [
    0,
    1,
    1023,
    1024,
    1536,
    10 * 1024 - 1,
    10 * 1024,
    10_700,
    64 * 1024,
    1024**2 - 1,
    1024**2,
    100 * 1024**2,
    3 * 1024**3,
    5 * 1024**4,
]
EXPECTED = [
    "0 B",
    "1 B",
    "1023 B",
    "1.0 KiB",
    "1.5 KiB",
    "10.0 KiB",
    "10 KiB",
    "10 KiB",
    "64 KiB",
    "1024 KiB",
    "1.0 MiB",
    "100 MiB",
    "3.0 GiB",
    "5120 GiB",
]
SCRIPT = Path(__file__).resolve().parents[2] / "tunnels" / "static" / "tunnels" / "inspector.js"


def test_python_says_binary_units() -> None:
    assert [binary(n) for n in COUNTS[:-1]] == EXPECTED[:-1]
    assert binary(5 * 1024**4) == "5.0 TiB"


def test_no_page_uses_djangos_decimal_labelled_filter() -> None:
    root = SCRIPT.parents[3]
    users = [
        str(path.relative_to(root))
        for folder in ("templates", "tunnels")
        for path in (root / folder).rglob("*")
        if path.suffix in (".html", ".py")
        and "filesizeformat(" in path.read_text()
        or path.suffix == ".html"
        and "|filesizeformat" in path.read_text()
    ]
    assert users == []


def test_javascript_says_the_same_as_python() -> None:
    source = SCRIPT.read_text()
    body = re.search(r"  function size\(bytes\) \{.*?\n  \}\n", source, re.S)
    assert body is not None, "inspector.js has no size()"
    program = body.group(0) + f"console.log(JSON.stringify({COUNTS[:-1]}.map(size)));"
    out = subprocess.run(["node", "-e", program], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(EXPECTED[:-1]).replace("'", '"').replace(", ", ",")
