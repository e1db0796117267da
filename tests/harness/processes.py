"""Child processes whose output is collected line by line, stopped for sure."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class Process:
    """A child process whose merged stdout/stderr is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, name: str = ""):
        self.name = name or Path(args[0]).name
        self.args = args
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[str]:
        """The first output line matching `pattern` (a regex), waiting up to `timeout`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    pytest.fail(
                        f"{self.name} did not print /{pattern}/ within {timeout:g} s "
                        f"(exit code {self.proc.poll()}); output:\n{self.output()}"
                    )
                self._cond.wait(min(left, 0.2))

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._reader.join(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


class ProcessGroup:
    """Processes started within one fixture scope; all stopped when the scope ends."""

    def __init__(self) -> None:
        self.processes: list[Process] = []

    def start(self, args: list[str], env: dict[str, str] | None = None, name: str = "") -> Process:
        process = Process(args, env, name)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception:  # keep stopping the others
                pass
        self.processes.clear()
