"""Whether a pool connection's local address is still this machine's.

When the machine moves to another network its old address goes, and connections made from
it are dead: their packets can no longer leave, the relay's cannot arrive, and neither end
hears of it until TCP keepalive gives up. `local_address_gone` returns as soon as the
address is gone, so the pool closes the connection and opens another from the new address
(the pool secret, not the address, binds it to the tunnel).
"""

from __future__ import annotations

import asyncio
import errno
import socket

from .limits import LOCAL_ADDRESS_CHECK_S


def is_local(family: int, address: str) -> bool:
    """Whether `address` is still one of this machine's (it can be bound)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        return exc.errno != errno.EADDRNOTAVAIL
    return True


async def local_address_gone(writer: asyncio.StreamWriter) -> None:
    """Return once the local address of `writer`'s connection is no longer this machine's;
    never, for a connection without one."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        await asyncio.Event().wait()
    family, address = sock.family, sock.getsockname()[0]
    while is_local(family, address):
        await asyncio.sleep(LOCAL_ADDRESS_CHECK_S)
