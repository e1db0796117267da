"""The newcomer tests' doubles: the README's quick start and production example, run as written from
a clean clone of the working tree, the way a new user would type them.

The clone gets the working tree's uncommitted changes and new files (so it is what is on disk,
without ignored files such as db.sqlite3 or staticfiles/), and a `.venv` made from this one
(its packages through a .pth file) so `make run` installs only the clone itself, in seconds.
The npm client comes from tests/.npm, as `npx` would fetch it from the network.

Commands run in their own process group, as a terminal's job: stopping one is Ctrl-C
(SIGINT to the group), and anything left is killed in `finally`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.procs import client_env
from harness.http import Visitor
from harness.processes import ROOT, Process
from harness.relay import NPM_LT
from harness.waiting import IO_TIMEOUT_S, wait_until

README = ROOT / "README.md"
START_TIMEOUT_S = 60.0  # `make run` from a clean clone: install the clone, migrate, start
STOP_TIMEOUT_S = 20.0  # RELAY_DRAIN_S (10 s) and a margin
RUN_TIMEOUT_S = 60.0


def readme_section(heading: str) -> str:
    """The text of the README section `## heading`, up to the next `## `."""
    text = README.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def fence_after(text: str, marker: str) -> str:
    """The body of the first code fence after `marker` in `text`."""
    at = text.index(marker)
    match = re.search(r"^```[^\n]*\n(.*?)^```", text[at:], re.M | re.S)
    assert match, f"no code fence after {marker!r}"
    return match.group(1)


def commands(fence: str) -> list[str]:
    """The fence's commands: continuation lines joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", "", fence)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def replace(command: str, old: str, new: str) -> str:
    """`command` with `old` replaced; the README must still contain what the test adapts."""
    assert old in command, f"the README changed: {old!r} is no longer in {command!r}"
    return command.replace(old, new)


class Terminal(Process):
    """One command typed into a shell in the clone, running as its own job."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str], name: str) -> None:
        self.command = command
        super().__init__(["bash", "-c", command], env, name=name, cwd=cwd)

    def interrupt(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Ctrl-C: SIGINT to the job; its exit code (the test fails if it does not stop)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"`{self.command}` ignored Ctrl-C for {timeout:g} s:\n{self.output()}")
        self._close()
        return code

    def _close(self) -> None:
        self._reader.join(STOP_TIMEOUT_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        """Whatever is left of the job (children included), killed; for `finally`."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(STOP_TIMEOUT_S)
        self._close()


@dataclass
class Clone:
    path: Path
    jobs: list[Terminal]

    def env(self, **extra: str) -> dict[str, str]:
        """A new user's shell: no test settings, nothing of this repository's venv."""
        env = client_env(**extra)
        for key in list(env):
            if key.startswith(("RELAY_", "DJANGO_")) or key in {
                "DEBUG",
                "SECRET_KEY",
                "DATABASE_URL",
                "REDIS_URL",
                "VIRTUAL_ENV",
                "PYTHONPATH",
            }:
                del env[key]
        env.update(extra)
        return env

    def start(self, command: str, env: dict[str, str], name: str = "") -> Terminal:
        job = Terminal(command, self.path, env, name or command)
        self.jobs.append(job)
        return job

    def run(self, command: str, env: dict[str, str]) -> str:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"`{command}` exited with {done.returncode}:\n{output}"
        assert "Traceback" not in output, f"`{command}`:\n{output}"
        return done.stdout

    def bootstrap(self) -> None:
        """What `make run` does first (install the clone into .venv), if not done yet."""
        if not (self.path / ".venv" / ".deps-run").exists():
            self.run("make .venv/.deps-run", self.env())


def wait_for_sockets(port: int, name: str, count: int = 1) -> None:
    """Until the relay counts the tunnel's pool sockets. Clients print `your url is` when
    registered, before their sockets connect; until then the relay answers 503 (client
    offline), which a user who is quick enough (or a busy machine) does see."""

    def connected() -> bool:
        with Visitor(port, f"127.0.0.1:{port}") as visitor:
            answer = visitor.request("GET", f"/api/tunnels/{name}/status")
        return answer.status == 200 and answer.json()["connected_sockets"] >= count

    wait_until(connected, IO_TIMEOUT_S, f"{count} pool sockets of {name}")


def git(*args: str, cwd: Path = ROOT, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True, timeout=60
    ).stdout


def make_clone(dest: Path) -> Path:
    git("clone", "-q", str(ROOT), str(dest))
    diff = git("diff", "HEAD", "--binary")
    if diff:
        git("apply", "--whitespace=nowarn", "-", cwd=dest, stdin=diff)
    for raw in git("ls-files", "--others", "--exclude-standard", "-z").split(b"\0"):
        name = raw.decode()
        source = ROOT / name
        if name and source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    # `make test` would install the npm client here; use the one already installed.
    (dest / "tests" / ".npm").symlink_to(NPM_LT.parents[2].resolve())
    # A venv made from this one: its packages through a .pth file, none of its own yet.
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(dest / ".venv")], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = dest / ".venv" / "lib" / version / "site-packages"
    (site / "packages-of-the-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return dest
