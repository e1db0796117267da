"""The tunnel a pool socket belongs to (relay/pool/socket.py's `SocketOwner`), as plain
values: for tests that drive a PoolSocket without a registry."""

from __future__ import annotations

from dataclasses import dataclass

from relay.pool.socket import PoolSocket


@dataclass
class Owner:
    client_id: str = ""  # "": a raw pipe (the npm client sends no client id)
    name: str = "owner"
    distrusted: bool = False

    def attach(self, conn: PoolSocket) -> bool:
        return True

    def detach(self, conn: PoolSocket) -> None:
        pass

    def distrust(self, how: str) -> None:
        self.distrusted = True
