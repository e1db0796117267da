"""relay/run/reactor.py: the relay's reactor calls readers and writers without Twisted's
legacy log context, keeps Twisted's handling of a failing read, and is the one `runrelay`
runs on (Daphne keeps it)."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.python import context, log

from relay.run.reactor import RelayReactor

ROOT = Path(__file__).resolve().parents[2]
RUN_DEADLINE_S = 5.0  # a loop run that never sees its event stops here, and the test fails

# sha256 (first 16 hex digits) of the source of Twisted's methods that RelayReactor
# restates: when a Twisted upgrade changes them, read them again against ours.
TWISTED_SOURCES = {"addReader": "61b77f35b35cd2e5", "addWriter": "dd13a0098bb09d36"}


class Descriptor:
    """The least a reactor needs of a file descriptor, recording what it was asked."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, fail: bool = False):
        self.sock = sock
        self.loop = loop
        self.fail = fail
        self.seen: list[tuple[str, object]] = []
        self.lost: list[Any] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:  # noqa: N802 (Twisted's name)
        return "descriptor"

    def system(self) -> object:
        """The legacy log context's "system" now: "-" (Twisted's default) outside one."""
        return context.get(log.ILogContext)["system"]

    def doRead(self) -> None:  # noqa: N802
        self.seen.append(("read", self.system()))
        self.loop.stop()
        if self.fail:
            raise ValueError("a protocol's bug")
        self.sock.recv(100)

    def doWrite(self) -> None:  # noqa: N802
        self.seen.append(("write", self.system()))
        self.loop.stop()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self.lost.append(reason)

    readConnectionLost = connectionLost  # noqa: N815


@pytest.fixture(params=["uvloop", "asyncio"])
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    made = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
    yield made
    made.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def run(loop: asyncio.AbstractEventLoop) -> None:
    deadline = loop.call_later(RUN_DEADLINE_S, loop.stop)
    loop.run_forever()
    deadline.cancel()


@pytest.mark.parametrize(
    ("kind", "system"), [(RelayReactor, "-"), (AsyncioSelectorReactor, "descriptor")]
)
def test_a_read_runs_without_the_legacy_log_context(
    loop: asyncio.AbstractEventLoop,
    pair: tuple[socket.socket, socket.socket],
    kind: type[AsyncioSelectorReactor],
    system: str | None,
) -> None:
    reactor = kind(loop)
    reader = Descriptor(pair[0], loop)
    reactor.addReader(reader)
    pair[1].send(b"x")
    run(loop)
    assert reader.seen == [("read", system)]
    reactor.removeReader(reader)


def test_a_write_runs_without_the_legacy_log_context(
    loop: asyncio.AbstractEventLoop, pair: tuple[socket.socket, socket.socket]
) -> None:
    reactor = RelayReactor(loop)
    writer = Descriptor(pair[0], loop)
    reactor.addWriter(writer)
    run(loop)  # a writable socket: called until the loop stops (once or twice)
    first = len(writer.seen)
    reactor.removeWriter(writer)
    reactor.addWriter(writer)  # registered again after removal
    run(loop)
    reactor.removeWriter(writer)
    assert first >= 1 and len(writer.seen) > first
    assert set(writer.seen) == {("write", "-")}
    assert writer not in reactor.getWriters()


def test_a_failing_read_disconnects_the_descriptor_as_twisted_does(
    loop: asyncio.AbstractEventLoop, pair: tuple[socket.socket, socket.socket]
) -> None:
    reactor = RelayReactor(loop)
    reader = Descriptor(pair[0], loop, fail=True)
    reactor.addReader(reader)
    pair[1].send(b"x")
    run(loop)
    assert reader.seen == [("read", "-")]
    assert len(reader.lost) == 1 and reader.lost[0].check(ValueError)
    assert reader not in reactor.getReaders()


def test_adding_a_reader_twice_registers_it_once(
    loop: asyncio.AbstractEventLoop, pair: tuple[socket.socket, socket.socket]
) -> None:
    reactor = RelayReactor(loop)
    reader = Descriptor(pair[0], loop)
    reactor.addReader(reader)
    reactor.addReader(reader)
    assert reactor.getReaders().count(reader) == 1
    reactor.removeReader(reader)
    assert reader not in reactor.getReaders()


@pytest.mark.parametrize("name", sorted(TWISTED_SOURCES))
def test_twisteds_methods_are_the_ones_restated(name: str) -> None:
    source = inspect.getsource(getattr(AsyncioSelectorReactor, name))
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == TWISTED_SOURCES[name], (
        f"Twisted's AsyncioSelectorReactor.{name} changed: compare relay/run/reactor.py's "
        "copy with it, then update TWISTED_SOURCES"
    )


def test_runrelay_runs_on_the_relay_reactor_and_daphne_keeps_it() -> None:
    # runrelay's import order, in a process of its own (this one has Daphne's reactor):
    # a warning from Daphne about another reactor fails it too (-W error).
    probe = (
        "import django; django.setup()\n"
        "import relay.run.loop_choice, relay.edge.server\n"
        "from twisted.internet import reactor\n"
        "print(type(reactor).__name__, type(reactor._asyncioEventloop).__module__)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tunnelsite.settings"}
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["RelayReactor", "uvloop"]
