"""The relay's stdout and stderr: writes that never block, never raise, and are bounded.

A relay's output usually goes to a pipe: `make run | tee log`, a supervisor, a container
runtime. When the reader dies every write fails with EPIPE; when it stops reading, the pipe
fills and a plain `write()` blocks the event loop, and with it the signal handlers, for ever.
So `install()` replaces `sys.stdout` and `sys.stderr` (and the streams of logging handlers
already configured) with `ConsoleStream`s: a write only appends to a bounded buffer, and a
writer thread copies it to the descriptor. A broken or closed descriptor drops what follows;
a full buffer drops lines and says how many once the reader catches up.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

from relay.protocol import CONSOLE_BUFFER_BYTES, EXIT_FLUSH_S


def reserve_standard_fds() -> None:
    """Open /dev/null on 0, 1 and 2 when they are closed (`runrelay >&-`): otherwise the
    next socket or database file opened would get descriptor 1 and receive the log."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


class ConsoleStream(io.TextIOBase):
    """A text stream over a descriptor whose `write` returns at once (see the module doc)."""

    def __init__(self, fd: int, name: str, limit: int = CONSOLE_BUFFER_BYTES) -> None:
        super().__init__()
        self.fd = fd
        self._name = name
        self.limit = limit
        self.dropped = 0  # lines (writes) left out because the buffer was full
        self.broken = False  # the descriptor failed (EPIPE, EBADF...): nothing goes out
        self._chunks: list[bytes] = []
        self._size = 0
        self._gap_at = 0  # where in _chunks lines started to be dropped
        self._busy = False  # the writer holds chunks it has not written yet
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"console-{name}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return self._name

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        try:
            return os.isatty(self.fd)
        except OSError:
            return False

    def fileno(self) -> int:
        return self.fd

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "backslashreplace")
        with self._cond:
            if self.broken or not data:
                return len(text)
            if self._size + len(data) > self.limit:
                if not self.dropped:
                    self._gap_at = len(self._chunks)  # the note goes where the gap starts
                self.dropped += 1
                return len(text)
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()
        return len(text)

    def flush(self) -> None:
        """Never waits: the writer thread sends what is buffered as fast as it is read."""

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` for the buffer to go out; True if it did (or cannot)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.broken or (not self._chunks and not self._busy), timeout
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._chunks))
                chunks, self._chunks = self._chunks, []
                self._size = 0
                if self.dropped:
                    note = f"[{self.dropped} lines of output dropped: nobody was reading them]\n"
                    chunks.insert(self._gap_at, note.encode())
                    self.dropped = 0
                self._busy = True
            data = b"".join(chunks)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError:  # EPIPE, EBADF, EIO...: the reader is gone for good
                with self._cond:
                    self.broken = True
                    self._chunks.clear()
                    self._size = 0
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class ConsoleHandler(logging.StreamHandler):
    """A logging handler writing to whatever `sys.stderr` is when a record is emitted
    (a `ConsoleStream` once `install()` has run), not to the stream of import time."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass  # a record that cannot be written is lost, never a traceback on stderr


_installed: tuple[ConsoleStream, ConsoleStream] | None = None


def install() -> tuple[ConsoleStream, ConsoleStream]:
    """Make this process's stdout, stderr and logging handlers `ConsoleStream`s."""
    global _installed
    if _installed is not None:
        return _installed
    reserve_standard_fds()
    old = {id(sys.stdout), id(sys.stderr), id(sys.__stdout__), id(sys.__stderr__)}
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    out, err = ConsoleStream(1, "<stdout>"), ConsoleStream(2, "<stderr>")
    sys.stdout, sys.stderr = out, err
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, ConsoleHandler
            ):
                if id(handler.stream) in old:
                    to_stdout = handler.stream is sys.__stdout__
                    try:
                        handler.setStream(out if to_stdout else err)
                    except (OSError, ValueError):  # flushing the old stream failed
                        handler.stream = out if to_stdout else err
    atexit.register(_drain_at_exit)
    _installed = (out, err)
    return _installed


def _drain_at_exit() -> None:
    if _installed is not None:
        deadline = time.monotonic() + EXIT_FLUSH_S  # for both streams together
        for stream in _installed:
            stream.drain(max(0.0, deadline - time.monotonic()))
