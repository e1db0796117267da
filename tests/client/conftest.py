"""Fixture wiring for the `lt` client's tests; the doubles live in tests/harness/.

- `relay`: a `RelayDouble` (harness/relay_double.py) that speaks the relay's contract.
- `app`, `local_app_class`: a `ThreadedHttpApp` (harness/local_apps.py), `http.server` in a
  thread; `ws_app`: a WebSocket echo app's port.
- `run_lt(*args, env=...)`: the real `lt` command as an `LtProcess` (harness/lt_process.py).
- `ca`, `ca_file`: a trustme CA and its PEM file; `tls_relay`: the relay double over HTTPS,
  its certificate from that CA for localhost and 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from harness.local_apps import ThreadedHttpApp, websocket_echo_app
from harness.lt_process import LtProcess, clean_lt_env
from harness.relay_double import RelayDouble, tls_double


@pytest.fixture
def relay() -> Iterator[RelayDouble]:
    double = RelayDouble().start()
    try:
        yield double
    finally:
        double.shutdown()
        assert double.violations == []


@pytest.fixture
def local_app_class() -> type[ThreadedHttpApp]:
    """For tests that start, stop or wrap a local app themselves."""
    return ThreadedHttpApp


@pytest.fixture
def app() -> Iterator[ThreadedHttpApp]:
    local = ThreadedHttpApp().start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def lt_env(tmp_path: Path) -> dict[str, str]:
    return clean_lt_env(tmp_path / "config")


@pytest.fixture
def run_lt(lt_env: dict[str, str]) -> Iterator[Callable[..., LtProcess]]:
    started: list[LtProcess] = []

    def run(
        *args: str, env: dict[str, str] | None = None, sigint_ignored: bool = False
    ) -> LtProcess:
        process = LtProcess(list(args), {**lt_env, **(env or {})}, sigint_ignored=sigint_ignored)
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


@pytest.fixture
def ws_app() -> Iterator[int]:
    """A WebSocket echo server (the `websockets` library) on a port of its own."""
    with websocket_echo_app() as port:
        yield port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "relay-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_relay(ca: trustme.CA) -> Iterator[RelayDouble]:
    double = tls_double(ca, "localhost", "127.0.0.1")
    try:
        yield double
    finally:
        double.shutdown()
        assert double.violations == []
