"""The settings the visitor's connection checks, read once per listener.

`settings.X` is Django's LazySettings: every read runs `LazyObject.__getattribute__` in
Python, and the edge read several per request (the domain, the body limit, the request
line's length; per body chunk, its pace). The listener's factory (relay/edge/server.py)
reads them into one `EdgeSettings` when Daphne builds it, and hands it to each connection.
The operator's settings do not change while a relay runs; runrelay's address settings
(relay/address.py, applied once it listens) keep RELAY_DOMAIN as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from relay.protocol import site_max_body_bytes


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    domain: bytes  # RELAY_DOMAIN, as the Host header's bytes are compared with it
    max_header_bytes: int
    max_header_count: int
    max_request_line_bytes: int
    header_timeout_s: float
    idle_timeout_s: float | None  # None: off
    max_body_bytes: int  # 0: no limit
    site_max_body_bytes: int  # a body to the site itself (protocol.site_max_body_bytes)
    body_timeout_s: float
    body_min_rate_bytes_s: int
    body_max_ahead_s: float

    @classmethod
    def read(cls) -> EdgeSettings:
        return cls(
            domain=settings.RELAY_DOMAIN.encode(),
            max_header_bytes=settings.RELAY_MAX_HEADER_BYTES,
            max_header_count=settings.RELAY_MAX_HEADER_COUNT,
            max_request_line_bytes=settings.RELAY_MAX_REQUEST_LINE_BYTES,
            header_timeout_s=settings.RELAY_HEADER_TIMEOUT_S,
            idle_timeout_s=settings.RELAY_IDLE_TIMEOUT_S or None,
            max_body_bytes=settings.RELAY_MAX_BODY_BYTES,
            site_max_body_bytes=site_max_body_bytes(
                settings.RELAY_INSPECT_BODY_BYTES, settings.RELAY_MAX_HEADER_BYTES
            ),
            body_timeout_s=settings.RELAY_BODY_TIMEOUT_S,
            body_min_rate_bytes_s=settings.RELAY_BODY_MIN_RATE_BYTES_S,
            body_max_ahead_s=settings.RELAY_BODY_MAX_AHEAD_S,
        )
