"""The HTTP proxies and relay.face tell a TCP tunnel's HTTP visitors where to connect without
importing the TCP listener (relay/pool/tcp_ports.py, which pulls in the visitor protocol)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORTERS = ("relay/face.py", "relay/proxy/http.py", "relay/proxy/websocket.py")


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }


def test_the_http_side_imports_the_message_not_the_listener() -> None:
    for name in IMPORTERS:
        modules = _imported(ROOT / name)
        assert "relay.pool.tcp_ports" not in modules, name
        assert "relay.pool.tcp_text" in modules, name
