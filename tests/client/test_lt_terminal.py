"""What `lt` shows on a real terminal (a pty): the status block as styled text, never markup."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from typing import TYPE_CHECKING

from conftest import REPO, WAIT_S

if TYPE_CHECKING:
    from conftest import LocalApp, RelayDouble

# CSI sequences (colours, cursor moves, erase) and the few other escapes rich writes.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


class Terminal:
    """`lt` with a pty as its terminal (stdin, stdout and stderr); collects what it draws."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        self.master = master
        self.raw = bytearray()
        self._changed = threading.Condition()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "client.cli", *args],
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


def test_the_status_block_shows_styles_not_markup_while_requests_scroll_above_it(
    relay: RelayDouble, app: LocalApp, lt_env: dict[str, str]
):
    env = {**lt_env, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    with socket.socket() as closed:  # a port where no app listens: every request fails
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    terminal = Terminal(["--port", str(app.port), "--host", relay.url, "--print-requests"], env)
    broken = Terminal(["--port", str(dead_port), "--host", relay.url, "--print-requests"], env)
    try:
        for term, status in ((terminal, 200), (broken, 502)):
            name = term.wait_for(r"your url is: http://([a-z0-9-]+)\.")[1]
            relay.wait_for_sockets(name)
            term.wait_for(r"State\s+online")
            for index in range(20):  # each request line redraws the block below it
                assert relay.request(name, "GET", f"/page-{index}").status == status
            term.wait_for(rf"GET /page-19 {status}")
        broken.wait_for(r"Last error\s+local app at")
    finally:
        terminal.stop()
        broken.stop()

    for term in (terminal, broken):
        shown = term.text()
        assert "online" in shown
        for markup in ("[green]", "[red]", "[yellow]", "[cyan]", "[/]"):
            assert markup not in shown, f"{markup} on the terminal:\n{shown[-3000:]}"
