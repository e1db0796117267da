"""Child processes for tests: the benchmark's `Child`, failing the test with its output."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

from bench.procs import ROOT, STOP_TIMEOUT_S, Child, Children, StartError
from harness import log_capture

__all__ = ["PYTHON", "ROOT", "Process", "ProcessGroup"]

PYTHON = sys.executable
START_TIMEOUT_S = 20.0


class Process(Child):
    """A child process whose merged stdout/stderr is collected line by line, and written
    byte for byte to the session's log directory (harness/log_capture.py)."""

    def __init__(self, args: list[str], *rest: Any, **kw: Any) -> None:
        self.kind = log_capture.command_kind(args)  # read by _read, started by __init__
        super().__init__(args, *rest, **kw)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        path = log_capture.log_file(self.name, self.proc.pid, self.kind)
        if path is None:
            super()._read()
            return
        with path.open("wb") as copy:
            for raw in self.proc.stdout:
                copy.write(raw)
                copy.flush()  # a session-end check may read it while the child runs
                with self._cond:
                    self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[str]:
        """The first output line matching `pattern` (a regex); the test fails after `timeout`."""
        try:
            return super().wait_for_line(pattern, timeout)
        except StartError:
            pytest.fail(
                f"{self.name} did not print /{pattern}/ within {timeout:g} s "
                f"(exit code {self.proc.poll()}); output:\n{self.output()}"
            )

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """The exit code, once the process has exited and all it printed has been read: the
        reader thread still had the pipe's last lines after an exit (a test then read an
        empty output() of lt's refusal)."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code


class ProcessGroup(Children):
    """Processes started within one fixture scope; all stopped when the scope ends."""

    child_class = Process

    def start(  # type: ignore[override]
        self, args: list[str], env: dict[str, str] | None = None, name: str = ""
    ) -> Process:
        log_capture.remember_from(args, env)
        process = super().start(args, env, name=name)
        assert isinstance(process, Process)
        return process
