"""The real `lt` command (`python -m tunnelsite_client.cli`) in a subprocess, its output collected
line by line, with an environment cleared of everything `lt` reads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from harness.processes import ROOT
from harness.waiting import IO_TIMEOUT_S

WAIT_S = IO_TIMEOUT_S
REPO = Path(ROOT)
# Environment variables `lt` reads (like the npm client); never leaked into a test.
LT_ENV = {
    "PORT",
    "HOST",
    "SUBDOMAIN",
    "LOCAL_HOST",
    "LOCAL_HTTPS",
    "LOCAL_CERT",
    "LOCAL_KEY",
    "LOCAL_CA",
    "ALLOW_INVALID_CERT",
    "PRINT_REQUESTS",
    "OPEN",
    "LT_TOKEN",
    "LT_CONFIG_DIR",
    "CA",
    "INSECURE",
    # The event loop (tunnelsite_client/event_loop.py): set only by the tests about it.
    "LT_UVLOOP",
    # Who may visit (tunnelsite_client/access.py): a test sets them only when it is about them.
    *("LT_BASIC_AUTH", "CIDR_ALLOW", "CIDR_DENY", "PRIVATE", "RAW_POOL", "TAKEOVER"),
    # The forward proxy (tunnelsite_client/connect.py): a test sets one only when it is about it.
    *("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"),
}


class LtProcess:
    """The real `lt` command in a subprocess; its output is collected line by line."""

    def __init__(
        self, args: list[str], env: dict[str, str], *, sigint_ignored: bool = False
    ) -> None:
        # sigint_ignored: lt inherits SIGINT ignored, as from a script's background job.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tunnelsite_client.cli", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_line(self, pattern: str, after: int = 0, timeout: float = WAIT_S) -> re.Match[str]:
        """The first stdout line from index `after` on that matches `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reading()):
                    raise AssertionError(
                        f"no line matching {pattern!r}; stdout={self.lines} stderr={self.errors}"
                    )
                self._changed.wait(min(left, 0.1))

    def _reading(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def url(self) -> str:
        return self.wait_for_line(r"^your url is: (\S+)$").group(1)

    def wait(self, timeout: float = WAIT_S) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT_S)
        for reader in self._readers:
            reader.join(WAIT_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def clean_lt_env(config_dir: Path) -> dict[str, str]:
    """This process's environment without anything `lt` reads, and a config dir of its own."""
    env = {k: v for k, v in os.environ.items() if k not in LT_ENV}
    env["LT_CONFIG_DIR"] = str(config_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def name_of(url: str) -> str:
    """The tunnel name in a tunnel URL (`https://quiet-fox.localhost:8080` -> `quiet-fox`)."""
    return url.split("//", 1)[1].split(".", 1)[0]
