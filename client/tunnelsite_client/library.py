"""The library face: `open_tunnel` (async context manager) and `SyncTunnel` (a thread)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from .connect import INSECURE_WARNING
from .limits import CLOSE_TIMEOUT_S, OPEN_TIMEOUT_S, THREAD_JOIN_GRACE_S
from .options import DEFAULT_HOST, TunnelOptions
from .tunnel import ClientTunnel


@contextlib.asynccontextmanager
async def open_tunnel(
    port: int,
    host: str = DEFAULT_HOST,
    subdomain: str | None = None,
    token: str | None = None,
    *,
    timeout_s: float = OPEN_TIMEOUT_S,
    **options: Any,
) -> AsyncIterator[ClientTunnel]:
    """Open a tunnel to localhost:`port`; `tunnel.url` is live inside the block.

    Extra keyword options are those of `TunnelOptions` (local_host, local_https, ...).
    `ca="ca.pem"` verifies the relay against that CA; `insecure=True` does not verify it (a
    warning is logged) and allows a token over plain http; `raw_pool=True` opens raw pool
    sockets like the npm client (unencrypted, bound to this address). `tcp=True` opens a TCP
    tunnel instead (`lt tcp`): `tunnel.url` is tcp://host:port, `remote_port=N` asks for a
    port reserved for you, and HTTP's options (subdomain, basic_auth, local_https, ...) are a
    ValueError. Raises ValueError for a token
    over plain http to a host that is not loopback, TunnelError when the relay refuses
    (CannotConnect when its certificate or its http pool URL is refused), or
    TimeoutError when no working URL came within `timeout_s`. On exit the sockets are
    closed and the name is released at the relay.
    """
    tunnel = ClientTunnel(
        TunnelOptions(port=port, host=host, subdomain=subdomain, token=token, **options)
    )
    if tunnel.options.insecure:
        warning = INSECURE_WARNING.replace("--insecure", "insecure=True")
        logging.getLogger("tunnelsite_client").warning(warning)
    runner = asyncio.create_task(tunnel.run())
    try:
        ready = asyncio.ensure_future(tunnel.ready.wait())
        done, _ = await asyncio.wait(
            {runner, ready}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if runner in done:
            runner.result()  # raises TunnelError
        if ready not in done:
            raise TimeoutError(
                f"no tunnel within {timeout_s:g} s: {tunnel.status.last_error or 'no answer'}"
            )
        yield tunnel
    finally:
        tunnel.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await runner
        if not runner.done():
            runner.cancel()
        await tunnel.release()


class SyncTunnel:
    """A tunnel run by an event loop in a background thread, for code that is not async.

    with SyncTunnel(port=3000) as tunnel:
        requests.get(tunnel.url)
    """

    def __init__(self, port: int, host: str = DEFAULT_HOST, **kwargs: Any) -> None:
        self._kwargs = {"port": port, "host": host, **kwargs}
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.tunnel: ClientTunnel | None = None

    @property
    def url(self) -> str:
        if self.tunnel is None:
            raise RuntimeError("the tunnel is not open")
        return self.tunnel.url

    def start(self) -> SyncTunnel:
        """Open the tunnel; returns once its URL works, raises what open_tunnel raises.
        Calling it again (as `with open_tunnel_sync(...)` does) changes nothing."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def close(self) -> None:
        """Close the sockets and release the name; waits for the thread to finish."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT_S + THREAD_JOIN_GRACE_S)

    def __enter__(self) -> SyncTunnel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with open_tunnel(**self._kwargs) as tunnel:
                self.tunnel = tunnel
                self._started.set()
                await self._stop.wait()
        except BaseException as exc:  # handed to the caller's thread by start()
            self._error = exc
        finally:
            self._started.set()


def open_tunnel_sync(port: int, host: str = DEFAULT_HOST, **kwargs: Any) -> SyncTunnel:
    """Open a tunnel in a background thread; call `.close()` (or use it in `with`)."""
    return SyncTunnel(port, host, **kwargs).start()


def via_relay(tunnel: ClientTunnel | SyncTunnel, path: str = "/") -> tuple[str, dict[str, str]]:
    """A URL for `path` at the relay's own address, and the Host header naming the tunnel.

    `tunnel.url` names `<name>.<domain>`, which may not resolve where a test suite runs
    (glibc does not resolve `*.localhost`; a test relay has no wildcard DNS). The relay picks
    the tunnel by the Host header alone, so this reaches the same app:

        url, headers = via_relay(tunnel, "/health")
        urllib.request.urlopen(urllib.request.Request(url, headers=headers))
    """
    inner = tunnel.tunnel if isinstance(tunnel, SyncTunnel) else tunnel
    if inner is None or not inner.url:
        raise RuntimeError("the tunnel is not open")
    relay = urlsplit(inner.options.host)
    address = relay.hostname or ""
    if ":" in address:
        address = f"[{address}]"
    if relay.port is not None:
        address = f"{address}:{relay.port}"
    if not path.startswith("/"):
        path = "/" + path
    return f"{relay.scheme}://{address}{path}", {"Host": urlsplit(inner.url).netloc}
