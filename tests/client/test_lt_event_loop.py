"""`lt` runs on uvloop when it is installed, and on asyncio's own loop with LT_UVLOOP=false
(which must not even load uvloop): either way it proxies the same requests."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvloop
from harness.lt_process import LtProcess, name_of

from tunnelsite_client.event_loop import UVLOOP_ENV, loop_factory

if TYPE_CHECKING:
    from harness.relay_double import RelayDouble


def uvloop_loaded(process: LtProcess) -> bool:
    """Whether uvloop's compiled loop is mapped into the process."""
    maps = Path(f"/proc/{process.proc.pid}/maps").read_text()
    return any("uvloop" in line and ".so" in line for line in maps.splitlines())


def proxies_a_get_and_a_post(relay: RelayDouble, lt: LtProcess) -> None:
    name = name_of(lt.url())
    relay.wait_for_sockets(name)
    answer = relay.request(name, "GET", "/hello?x=1")
    assert answer.status == 200
    assert answer.json()["path"] == "/hello?x=1"
    body = os.urandom(300 * 1024 + 3)
    answer = relay.request(name, "POST", "/upload", body=body)
    assert answer.status == 200
    assert answer.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_lt_runs_on_uvloop_by_default(relay: RelayDouble, app, run_lt):
    lt = run_lt("--port", str(app.port), "--host", relay.url)
    proxies_a_get_and_a_post(relay, lt)
    assert uvloop_loaded(lt)


@pytest.mark.parametrize("off", ["false", "0", "off"])
def test_lt_uvloop_false_keeps_asyncio_loop_and_never_loads_uvloop(
    relay: RelayDouble, app, run_lt, off: str
):
    lt = run_lt("--port", str(app.port), "--host", relay.url, env={UVLOOP_ENV: off})
    proxies_a_get_and_a_post(relay, lt)
    assert not uvloop_loaded(lt)


def test_the_loop_factory_follows_the_variable():
    assert loop_factory({}) is uvloop.new_event_loop
    assert loop_factory({UVLOOP_ENV: "true"}) is uvloop.new_event_loop
    assert loop_factory({UVLOOP_ENV: " No "}) is None
    factory = loop_factory({UVLOOP_ENV: "1"})
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert not isinstance(loop, asyncio.SelectorEventLoop)
    finally:
        loop.close()
