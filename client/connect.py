"""How this client reaches the relay: one place for the relay's TLS (its certificate is
verified by default; `--ca FILE`, `--insecure`) and for a forward proxy (HTTPS_PROXY).

Registration, release and the pool connections all dial the relay through
`RelayConnector.open`.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RelayConnector:
    """The way to the relay. `ca_file`: verify its certificate against this CA file (else
    the system's store); `insecure`: do not verify it (--insecure)."""

    ca_file: str | None = None
    insecure: bool = False
    _context: list[ssl.SSLContext] = field(default_factory=list, repr=False, compare=False)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings for https relays, made once."""
        if not self._context:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context.append(context)
        return self._context[0]

    async def open(
        self, host: str, port: int, tls: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the relay at host:port, over TLS when `tls` (the caller puts a
        deadline on it)."""
        return await asyncio.open_connection(host, port, ssl=self.ssl_context() if tls else None)
