"""Django TestCase doubles: users, tokens, auth headers and a relay registry per test
(tests/accounts, tests/dashboard, tests/cluster)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.test import AsyncClient, TestCase

from harness import log_capture
from harness.waiting import wait_until_async
from relay.cluster import control
from relay.pool.registry import Registry, get_registry, reset_registry
from relay.pool.socket import PoolSocket
from relay.pool.tunnel import Tunnel
from tunnels.models import ApiToken

NPM_USER_AGENT = "axios/0.21.4"


async def upgraded_pool_connection(
    tunnel: Tunnel,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Our lt's end of one pool connection of `tunnel`, attached as an upgraded connection is
    after its 101 (bound by the secret, not the address: relay/pool/upgraded.py). The upgrade
    itself is answered by the Twisted layer, which Django TestCases do not run (tests/sockets
    and tests/e2e drive it): here the connection is a socket pair in this process."""
    relay_end, client_end = socket.socketpair()
    loop = asyncio.get_running_loop()

    def attach() -> PoolSocket:
        conn = PoolSocket(tunnel, settings.RELAY_MAX_HEADER_BYTES)
        tunnel.upgrading = conn
        return conn

    try:
        await loop.connect_accepted_socket(attach, relay_end)
    finally:
        tunnel.upgrading = None
    return await asyncio.open_connection(sock=client_end)


def make_user(username: str, **extra: Any) -> User:
    return User.objects.create_user(username=username, password="pw-for-tests-only", **extra)


def make_token(user: User, name: str = "laptop", **extra: Any) -> tuple[ApiToken, str]:
    token, text = ApiToken.issue(user, name=name, **extra)
    log_capture.remember(text, f"the API token of {user.username!r} (harness.accounts)")
    return token, text


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(username: str, password: str = "") -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@contextlib.asynccontextmanager
async def fresh_registry() -> AsyncIterator[Registry]:
    """A registry bound to this test's event loop, with every tunnel closed at the end."""
    reset_registry()
    try:
        yield get_registry()
    finally:
        await get_registry().shutdown()
        reset_registry()


async def tunnel_closed(registry: Registry, name: str, timeout: float = 2.0) -> None:
    """Wait until the relay no longer has the tunnel `name`; the test fails after `timeout`."""
    await wait_until_async(lambda: registry.get(name) is None, timeout, f"{name} to close")


def isolated(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Run a test against a fresh registry and close its tunnels on the test's own loop
    (Django's TestCase has no asyncTearDown)."""

    @functools.wraps(test)
    async def wrapper(self: TestCase) -> None:
        reset_registry()
        try:
            await test(self)
        finally:
            await get_registry().shutdown("test over")
            reset_registry()

    return wrapper


class AddressedClient(AsyncClient):
    """Django's async test client, calling from a chosen client address."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__()
        self.address = list(address)

    def _base_scope(self, **request: object) -> dict:
        scope = super()._base_scope(**request)
        scope["client"] = self.address
        return scope


class ControlListening(TestCase):
    """A TestCase whose tests run the relay's control listener (relay/cluster/control.py)
    while the admin sends it messages over the in-memory channel layer."""

    async def _listening(self) -> asyncio.Task[None]:
        ready = asyncio.Event()
        task = asyncio.get_running_loop().create_task(control.listen(ready))
        async with asyncio.timeout(2):
            await ready.wait()
        return task

    async def _stop(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
