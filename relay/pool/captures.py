"""The request inspector's memory: each tunnel's last exchanges, for its owner.

Sans-IO: the byte path (relay/proxy/http.py, relay/proxy/exchange.py) feeds a `Capture` the
request head as sent upstream, body pieces and the response; `finish` stores it. Nothing is
kept while inspection is off (`tunnel.captures is None`: the byte path checks that one
attribute). Bounds: RELAY_INSPECT_REQUESTS per tunnel, RELAY_INSPECT_BODY_BYTES per body,
and RELAY_INSPECT_MEMORY_BYTES for every tunnel's stored captures together (kept bytes plus
protocol.INSPECT_RECORD_OVERHEAD_BYTES each), the relay-wide oldest dropped first; of a
tunnel's replays, at most protocol.INSPECT_REPLAYS_KEPT, so replays cannot flood it. An
exchange in flight holds at most its two body prefixes; it is counted once stored.

relay.protocol documents the JSON (INSPECT_PATH). relay/proxy/replay.py sends a capture again
(installed with `install_replayer` by relay/asgi.py, since the pool layer may not import
the proxies).
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from itertools import chain
from operator import itemgetter
from typing import Any, Protocol

from django.conf import settings

from relay.protocol import (
    INSPECT_HEADER_OVERHEAD_BYTES,
    INSPECT_RECORD_OVERHEAD_BYTES,
    INSPECT_REDACTED,
    INSPECT_REDACTED_HEADERS,
    INSPECT_REPLAYS_KEPT,
)

_MS_PER_S = timedelta(seconds=1) / timedelta(milliseconds=1)
# Wall time = monotonic time + this, taken once: no time.time() call per exchange.
_WALL_MINUS_MONOTONIC = time.time() - time.monotonic()


class Tunnel(Protocol):
    """What the inspector needs of relay.pool.tunnel.Tunnel (which imports this module)."""

    name: str
    user_id: int | None  # None: anonymous, with no owner to show captures to
    captures: TunnelCaptures | None


class ReplayError(Exception):
    """Why a replay cannot be done, with the HTTP status the site answers (404: no such
    tunnel or capture; 400: bad edits; 429: too many at once, or the plan's limits; 502/504:
    the tunnel failed) and, for a refusal that clears by itself, the seconds after which to
    try again (the answer's Retry-After)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


_REDACTED = INSPECT_REDACTED.encode()
RawHeaders = Sequence[tuple[bytes, bytes]]  # an h11 event's headers, or a list
_name = itemgetter(0)


def _items(headers: RawHeaders) -> Sequence[tuple[bytes, ...]]:
    """`headers` as a list read at C speed: h11's Headers keep their (name as sent, name
    lowercased, value) triples in a list (its `_full_items`, h11 0.16 as pinned), which
    iterating them through the Sequence interface walks in Python, item by item."""
    full: Sequence[tuple[bytes, ...]] | None = getattr(headers, "_full_items", None)
    return headers if full is None else full


def redacted(headers: RawHeaders) -> RawHeaders:
    """`headers` with the values of credentials (protocol.INSPECT_REDACTED_HEADERS, in any
    case) replaced by protocol.INSPECT_REDACTED. Kept as bytes: text only when shown. The
    usual head has no credential: found with C-level map and set calls, `headers` itself is
    kept, not copied (h11's headers are immutable, and the relay builds a list it passes
    on and no longer changes)."""
    if INSPECT_REDACTED_HEADERS.isdisjoint(map(bytes.lower, map(_name, _items(headers)))):
        return headers
    return [
        (name, _REDACTED if name.lower() in INSPECT_REDACTED_HEADERS else value)
        for name, value in headers
    ]


def _size(headers: RawHeaders) -> int:
    """What `headers` hold in memory, as protocol.INSPECT_HEADER_OVERHEAD_BYTES says: each
    pair's fixed cost and its bytes (h11's hold the name twice: as sent and lowercased)."""
    items = _items(headers)
    return INSPECT_HEADER_OVERHEAD_BYTES * len(items) + sum(map(len, chain.from_iterable(items)))


def _text(headers: RawHeaders) -> list[list[str]]:
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]


class Body:
    """The first `limit` bytes of a body and its full size; past the limit, only counted.
    The kept bytes are one object (the first piece as it came, or one bytearray once a
    second piece comes, frozen to bytes when stored), so what is counted is what is held."""

    __slots__ = ("kept_bytes", "size", "limit")

    def __init__(self, limit: int) -> None:
        self.kept_bytes: bytes | bytearray = b""
        self.size = 0
        self.limit = limit

    def add(self, data: bytes) -> None:
        n = len(data)
        self.size += n
        kept = self.kept_bytes
        room = self.limit - len(kept)
        if room <= 0 or not n:
            return
        piece = data if n <= room else data[:room]  # only what is kept is copied
        if not kept:
            self.kept_bytes = bytes(piece)  # no copy for a bytes piece kept whole
        elif type(kept) is bytearray:
            kept += piece
        else:
            self.kept_bytes = bytearray(kept) + piece

    def freeze(self) -> None:
        """Hold the kept bytes as one exact-size bytes (a bytearray keeps spare room)."""
        if type(self.kept_bytes) is bytearray:
            self.kept_bytes = bytes(self.kept_bytes)

    @property
    def kept(self) -> int:
        return len(self.kept_bytes)

    def data(self) -> bytes:
        return bytes(self.kept_bytes)

    @property
    def truncated(self) -> bool:
        return self.size > len(self.kept_bytes)


class Capture:
    """One exchange: what the app was sent and what it answered (credentials redacted)."""

    __slots__ = (
        "id",
        "started",
        "method",
        "target",
        "request_headers",
        "request",
        "status",
        "reason",
        "response_headers",
        "response",
        "duration_ms",
        "client_ip",
        "replay_of",
        "error",
        "cost",
        "home",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: RawHeaders,
        client_ip: str,
        body_limit: int,
        replay_of: int | None = None,
    ) -> None:
        self.id = 0  # given when stored: relay-wide, rising in the order exchanges end
        self.started = time.monotonic()
        self.method = method
        self.target = target
        self.request_headers = redacted(headers)
        self.request = Body(body_limit)
        self.status: int | None = None
        self.reason = b""  # text only when read
        self.response_headers: RawHeaders = ()
        self.response = Body(body_limit)
        self.duration_ms = 0.0
        self.client_ip = client_ip
        self.replay_of = replay_of
        self.error = ""
        self.cost = 0
        self.home: TunnelCaptures | None = None

    def response_head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.status = status
        self.reason = reason
        self.response_headers = redacted(headers)

    @property
    def at(self) -> float:
        """When the exchange began, in Unix seconds."""
        return self.started + _WALL_MINUS_MONOTONIC

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "method": self.method,
            "path": self.target,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "request_bytes": self.request.size,
            "response_bytes": self.response.size,
            "client_ip": self.client_ip,
            "replay_of": self.replay_of,
            "error": self.error,
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "request": {
                "headers": _text(self.request_headers),
                "body_b64": base64.b64encode(self.request.data()).decode("ascii"),
                "body_truncated": self.request.truncated,
            },
            "response": {
                "reason": self.reason.decode("latin-1"),
                "headers": _text(self.response_headers),
                "body_b64": base64.b64encode(self.response.data()).decode("ascii"),
                "body_truncated": self.response.truncated,
            },
        }


class TunnelCaptures:
    """One tunnel's kept exchanges (bounded by RELAY_INSPECT_REQUESTS), oldest first."""

    __slots__ = ("store", "records")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.records: OrderedDict[int, Capture] = OrderedDict()

    def begin(
        self,
        method: str,
        target: str,
        headers: RawHeaders,
        client_ip: str,
        replay_of: int | None = None,
    ) -> Capture:
        return Capture(method, target, headers, client_ip, self.store.body_bytes, replay_of)

    def finish(self, capture: Capture, error: str = "") -> None:
        """Store `capture` (once), with `error` ("" when it went through)."""
        if capture.id:
            return
        capture.error = error
        capture.duration_ms = round((time.monotonic() - capture.started) * _MS_PER_S, 1)
        store = self.store
        capture.id = store.next_id
        store.next_id += 1
        store.add(self, capture)

    def clear(self) -> None:
        for capture in list(self.records.values()):
            self.store.drop(capture)


class Store:
    """All tunnels' stored captures, in the order they were stored (the relay-wide oldest
    go first when `memory_bytes` would be passed)."""

    def __init__(self, requests: int, body_bytes: int, memory_bytes: int) -> None:
        self.requests = requests
        self.body_bytes = body_bytes
        self.memory_bytes = memory_bytes
        self.used = 0
        self.order: OrderedDict[int, Capture] = OrderedDict()  # id(capture) -> capture
        # Ids are relay-wide and rise across registrations and restarts: the page asks for
        # the requests `?after=` the newest id it has, and opens one by its id. Seeded from
        # the wall clock in ms, a restarted relay starts above the previous run's ids (unless
        # that run kept more than 1,000 exchanges a second for all its life).
        self.next_id = int(time.time() * _MS_PER_S)

    @property
    def on(self) -> bool:
        return self.requests > 0 and self.memory_bytes > 0

    def add(self, home: TunnelCaptures, capture: Capture) -> None:
        cost = (
            INSPECT_RECORD_OVERHEAD_BYTES
            + len(capture.method)
            + len(capture.target)
            + _size(capture.request_headers)
            + _size(capture.response_headers)
            + len(capture.reason)
            + len(capture.error)
            + capture.request.kept
            + capture.response.kept
        )
        if cost > self.memory_bytes:
            return  # larger than the whole bound: never kept
        capture.request.freeze()
        capture.response.freeze()
        capture.cost = cost
        capture.home = home
        home.records[capture.id] = capture
        self.order[id(capture)] = capture
        self.used += cost
        records, order = home.records, self.order
        if capture.replay_of is not None:  # replays push out replays, not visitors' requests
            replays = [kept for kept in records.values() if kept.replay_of is not None]
            if len(replays) > INSPECT_REPLAYS_KEPT:
                self.drop(replays[0])
        while len(records) > self.requests:
            self.drop(records[next(iter(records))])
        while self.used > self.memory_bytes:
            self.drop(order[next(iter(order))])

    def drop(self, capture: Capture) -> None:
        home = capture.home
        if home is None:
            return
        del home.records[capture.id]
        del self.order[id(capture)]
        self.used -= capture.cost
        capture.home = None


_store: Store | None = None


def store() -> Store:
    """The relay's store, made anew when the settings change (tests' override_settings)."""
    global _store
    limits = (
        settings.RELAY_INSPECT_REQUESTS,
        settings.RELAY_INSPECT_BODY_BYTES,
        settings.RELAY_INSPECT_MEMORY_BYTES,
    )
    current = _store
    if current is None or (current.requests, current.body_bytes, current.memory_bytes) != limits:
        current = _store = Store(*limits)
    return current


def enable(tunnel: Tunnel, on: bool) -> None:
    """Start (or keep) keeping `tunnel`'s exchanges when `on`; stop and forget them when not,
    when the relay keeps none (RELAY_INSPECT_REQUESTS or _MEMORY_BYTES 0), and for an
    anonymous tunnel, which has no owner to show them to."""
    relay_store = store()
    if on and relay_store.on and tunnel.user_id is not None:
        if tunnel.captures is None or tunnel.captures.store is not relay_store:
            forget(tunnel)
            tunnel.captures = TunnelCaptures(relay_store)
        return
    forget(tunnel)


def forget(tunnel: Tunnel) -> None:
    """Free `tunnel`'s captures (it closed, or its plan keeps none now)."""
    captures = tunnel.captures
    tunnel.captures = None
    if captures is not None:
        captures.clear()


def kept(tunnel: Tunnel | None) -> bool:
    """Whether `tunnel` is live here and keeps captures."""
    return tunnel is not None and tunnel.captures is not None


def summaries(tunnel: Tunnel | None, after: int = 0) -> list[dict[str, Any]] | None:
    if tunnel is None or tunnel.captures is None:
        return None
    records = tunnel.captures.records
    return [records[i].summary() for i in reversed(records) if i > after]


def detail(tunnel: Tunnel | None, capture_id: int) -> dict[str, Any] | None:
    if tunnel is None or tunnel.captures is None:
        return None
    capture = tunnel.captures.records.get(capture_id)
    return None if capture is None else capture.detail()


# relay/proxy/replay.py, installed by relay/asgi.py: sends a capture again with edits.
Replayer = Callable[[Any, Capture, dict[str, Any]], Awaitable[dict[str, Any]]]
_replayer: Replayer | None = None


def install_replayer(replayer: Replayer) -> None:
    global _replayer
    _replayer = replayer


async def replay(tunnel: Tunnel | None, capture_id: int, edits: dict[str, Any]) -> dict[str, Any]:
    if tunnel is None or tunnel.captures is None:
        raise ReplayError(404, "There is no such request to replay.")
    capture = tunnel.captures.records.get(capture_id)
    if capture is None:
        raise ReplayError(
            404, "There is no such request to replay (the relay keeps only the latest ones)."
        )
    if _replayer is None:
        raise ReplayError(503, "This relay cannot replay requests.")
    return await _replayer(tunnel, capture, edits)


def in_use() -> Store | None:
    """The relay's store if one was made (/metrics reads its memory), without making one."""
    return _store
