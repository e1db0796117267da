"""A command with a pty as its terminal: what it draws, with escape sequences stripped."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

WAIT_S = 10.0
REPO = Path(__file__).resolve().parents[2]

# CSI sequences (colours, cursor moves, erase) and the few other escapes rich writes.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


class Terminal:
    """`args` with a pty as its terminal (stdin, stdout and stderr); collects what it draws."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        self.master = master
        self.raw = bytearray()
        self._changed = threading.Condition()
        try:
            self.proc = subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the process and its terminal are gone
                data = b""
            with self._changed:
                if not data:
                    self._changed.notify_all()
                    return
                self.raw += data
                self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def wait_for(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if match := re.search(pattern, ANSI.sub("", self.raw.decode("utf-8", "replace"))):
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no {pattern!r} on the terminal: {self.raw[-2000:]!r}")
                self._changed.wait(left)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(WAIT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(WAIT_S)
            self._reader.join(WAIT_S)
            os.close(self.master)
