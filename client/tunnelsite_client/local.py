"""The connection to the local app: dialled here, plain TCP (local_tcp.py) or TLS
(local_tls.py) behind the same small face.

Connections are kept alive between requests by the exchange. A kept one is watched while
idle (`park`): bytes or the end of the stream then call the exchange back at once. Right
before it is reused, `idle_state()` checks once more (what arrived but the loop has not
seen yet): still good, closed by the app, or holding bytes the app sent while nobody
asked. `AddressCache` looks the app's host name up only once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

from .local_tcp import SocketConnection
from .local_tls import BufferingProtocol, TLSConnection

LocalConnection = SocketConnection | TLSConnection
_AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


class AddressCache:
    """The local app's addresses, looked up once (getaddrinfo runs in a worker thread, far
    too slow per request). The address that connected last is tried first; when none of
    them connects, the next connection looks the name up again."""

    def __init__(self) -> None:
        self.infos: list[_AddrInfo] = []

    async def lookup(self, host: str, port: int) -> list[_AddrInfo]:
        if not self.infos:
            loop = asyncio.get_running_loop()
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            self.infos = [(int(f), int(k), p, name, addr) for f, k, p, name, addr in found]
        return list(self.infos)

    def worked(self, info: _AddrInfo) -> None:
        if self.infos and self.infos[0] != info:
            with contextlib.suppress(ValueError):
                self.infos.remove(info)
            self.infos.insert(0, info)

    def forget(self) -> None:
        self.infos = []


async def connect(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    addresses: AddressCache | None = None,
) -> LocalConnection:
    """Connect to the local app, trying each address of `host` in turn."""
    loop = asyncio.get_running_loop()
    cache = addresses or AddressCache()
    infos = await cache.lookup(host, port)
    error: OSError = OSError(f"cannot resolve {host}")
    for info in infos:
        family, kind, proto, _, address = info
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        cache.worked(info)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is None:
            return SocketConnection(sock)
        try:
            transport, protocol = await loop.create_connection(
                BufferingProtocol, sock=sock, ssl=ssl_context, server_hostname=host
            )
        except BaseException:
            sock.close()
            raise
        return TLSConnection(transport, protocol)
    cache.forget()
    raise error
