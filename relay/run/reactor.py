"""The relay's Twisted reactor: Daphne's asyncio reactor, calling readers and writers directly.

Twisted's `AsyncioSelectorReactor` registers each descriptor with the loop through
`twisted.python.log.callWithLogger`: for every readable or writable event (each request of
each visitor) it asks the protocol for its log prefix and pushes and pops a legacy log
context around the call, about 4% of the relay's CPU under load. That context only tags
lines of Twisted's legacy text log, which the relay does not use: Daphne sends Twisted's
events to Python logging, which never shows it. `_readOrWrite` already catches and logs a
failing read or write, and disconnects the descriptor, as before.

`install()` runs before `daphne.server` is imported (relay/run/loop_choice.py): Daphne keeps
a reactor that is already an `AsyncioSelectorReactor` (it only replaces other kinds).
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.main import installReactor


class RelayReactor(AsyncioSelectorReactor):
    """`AsyncioSelectorReactor` whose loop calls `_readOrWrite` without the log context.
    `addReader` and `addWriter` are Twisted's (26.10.0), but for the callback:
    tests/unit/test_relay_reactor.py fails when Twisted's change, to be read again."""

    def addReader(self, reader: Any) -> None:  # noqa: N802 (Twisted's name)
        if reader in self._readers or reader in self._continuousPolling._readers:
            return
        fd = reader.fileno()
        try:
            self._asyncioEventloop.add_reader(fd, self._readOrWrite, reader, True)
            self._readers[reader] = fd
        except OSError as e:
            self._unregisterFDInAsyncio(fd)
            if e.errno == errno.EPERM:
                # epoll(7) does not take some descriptors (files): Twisted polls those.
                self._continuousPolling.addReader(reader)
            else:
                raise

    def addWriter(self, writer: Any) -> None:  # noqa: N802
        if writer in self._writers or writer in self._continuousPolling._writers:
            return
        fd = writer.fileno()
        try:
            self._asyncioEventloop.add_writer(fd, self._readOrWrite, writer, False)
            self._writers[writer] = fd
        except PermissionError:
            self._unregisterFDInAsyncio(fd)
            self._continuousPolling.addWriter(writer)
        except BrokenPipeError:
            self._unregisterFDInAsyncio(fd)
        except BaseException:
            self._unregisterFDInAsyncio(fd)
            raise


def install() -> None:
    """Install `RelayReactor` on a new loop of the current policy (uvloop's, when chosen),
    as Daphne would install its own."""
    installReactor(RelayReactor(asyncio.new_event_loop()))
