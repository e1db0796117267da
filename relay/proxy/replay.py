"""Replay: send a captured request again through its tunnel, with the owner's edits.

The owner asks (tunnels/inspect_api.py -> relay.face.replay -> relay/pool/captures.py, which
calls the replayer relay/asgi.py installs), so the visitor gate is not in the way; the
request goes on one of the tunnel's pool sockets like a visitor's, with the same deadlines,
and its answer is captured like any exchange (replay_of set) and counted in the tunnel's
requests and bytes. `build` (sans-IO) turns a capture and edits into the request.

A replay is a request like a visitor's: the tunnel's plan limits (`quota.admit`) apply,
the wait for a pool socket is bounded by RELAY_SOCKET_WAIT_S, and the whole exchange after
it by one deadline of RELAY_RESPONSE_TIMEOUT_S, so an app that dribbles its answer cannot
hold a replay for ever. The longest a replay takes is the sum of the two; the page waits
longer, and a forwarding node waits that plus protocol.PEER_RESPONSE_MARGIN_S for the
owner node's answer (relay/cluster/peer_proxy.py).
"""

from __future__ import annotations

import asyncio
import binascii
import re
import time
from typing import Any

import h11
from django.conf import settings

from relay.pool.captures import Capture, ReplayError
from relay.pool.quota import DayUsed
from relay.pool.tunnel import NoSocket, Tunnel
from relay.protocol import (
    HOP_BY_HOP,
    INSPECT_REDACTED,
    INSPECT_REDACTED_HEADERS,
    INSPECT_REPLAY_MAX_CONCURRENT,
    INSPECT_REPLAY_MAX_HEADERS,
    INSPECT_REPLAY_MAX_METHOD_BYTES,
    INSPECT_REPLAY_MAX_RESPONSE_BYTES,
    INSPECT_REPLAY_NAME_SHOWN_CHARS,
    RETRY_AFTER_BUSY_S,
    public_url,
)
from relay.proxy.exchange import FAILURES, count, read_response_head

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
# The relay frames the body itself, and a replay is one exchange on a pool socket: as for a
# visitor (relay/headers.py), hop-by-hop headers (Connection, Upgrade, TE, ...) and Expect
# are not passed on.
_NOT_SENT = HOP_BY_HOP | {b"expect"}
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_OWS = b" \t"  # around a value: not part of it (RFC 9110 section 5.5)
_LINE = len(b": \r\n")  # around each header line, as on the wire
_REQUEST_LINE = len(b"  HTTP/1.1\r\n")  # around the method and target, as on the wire
_REPLAY_VISITOR = "replay"  # the share of sockets a replay counts under (the owner asks)

Request = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]
# Replays in flight per tunnel (relay.protocol.INSPECT_REPLAY_MAX_CONCURRENT); an entry
# lives only while its tunnel has one.
_running: dict[Tunnel, int] = {}


def _text(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ReplayError(400, f"The {what} must be a string.")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise ReplayError(400, f"The {what} may hold only Latin-1 characters.") from None


def _headers(capture: Capture, edits: dict[str, Any], host: bytes) -> list[tuple[bytes, bytes]]:
    given = edits.get("headers")
    if given is None:
        pairs = list(capture.request_headers)
    else:
        if not isinstance(given, list) or len(given) > INSPECT_REPLAY_MAX_HEADERS:
            raise ReplayError(
                400,
                f"headers must be a list of at most {INSPECT_REPLAY_MAX_HEADERS} "
                "[name, value] pairs.",
            )
        pairs = []
        for pair in given:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ReplayError(400, "Each header must be a [name, value] pair.")
            pairs.append((_text(pair[0], "header name"), _text(pair[1], "header value")))
    kept = []
    hosts = 0
    for name, raw in pairs:
        lower = name.lower()
        value = raw.strip(_OWS)
        if lower in _NOT_SENT:
            continue
        if lower in INSPECT_REDACTED_HEADERS and value == INSPECT_REDACTED.encode():
            continue  # a credential the relay never kept: left out unless the owner types one
        if not _TOKEN.fullmatch(name):
            raise ReplayError(
                400,
                f"{_shown(name)!r} is not a header name: use letters, digits "
                "and - (or !#$%&'*+.^_`|~), with no spaces or colon.",
            )
        if _CONTROL.search(value):
            raise ReplayError(
                400,
                f"The value of {name.decode('latin-1')} holds a line break or another "
                "control character: a header value is one line.",
            )
        hosts += lower == b"host"
        kept.append((name, value))
    if hosts > 1:
        raise ReplayError(400, f"Send one Host header, not {hosts}.")
    if not hosts:  # left out of the edits: the app is asked for the tunnel, as visitors ask
        kept.insert(0, (b"host", host))
    return kept


def _shown(name: bytes) -> str:
    """A header name as a refusal quotes it (cut: it may be as long as a head)."""
    return name[:INSPECT_REPLAY_NAME_SHOWN_CHARS].decode("latin-1")


def _host(capture: Capture, tunnel_host: bytes) -> bytes:
    """The Host the capture was sent with, else the tunnel's public one."""
    for name, value in capture.request_headers:
        if name.lower() == b"host":
            return value
    return tunnel_host


def _body(capture: Capture, edits: dict[str, Any], limit: int) -> bytes:
    given = edits.get("body_b64")
    if given is None:
        if capture.request.truncated:
            raise ReplayError(
                400,
                f"This request's body was {capture.request.size} bytes and only its first "
                f"{capture.request.kept} were kept, so it cannot be sent again as it was; "
                "send a body (body_b64) to replay it with that one.",
            )
        return capture.request.data()
    if not isinstance(given, str):
        raise ReplayError(400, "body_b64 must be a base64 string.")
    try:
        body = binascii.a2b_base64(given.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ReplayError(400, "body_b64 is not valid base64.") from None
    if len(body) > limit:
        raise ReplayError(400, f"The body may be at most {limit} bytes.")
    return body


def build(
    capture: Capture,
    edits: dict[str, Any],
    body_limit: int,
    head_limit: int,
    line_limit: int,
    tunnel_host: bytes = b"",
) -> Request:
    """The request to send: (method, target, headers, body), from `capture` with `edits`
    (method, path, headers, body_b64). Each part is bounded as a visitor's request is
    (relay.protocol.INSPECT_REPLAY_MAX_METHOD_BYTES says how), before anything parses it.
    Headers edits without a Host get the capture's (else `tunnel_host`): the app is asked
    for the tunnel. Raises ReplayError(400) saying what is wrong."""
    if not isinstance(edits, dict):
        raise ReplayError(400, "The edits must be a JSON object.")
    method = _text(edits.get("method", capture.method), "method").upper()
    if len(method) > INSPECT_REPLAY_MAX_METHOD_BYTES:
        raise ReplayError(
            400,
            f"The method may be at most {INSPECT_REPLAY_MAX_METHOD_BYTES} characters "
            f"(it has {len(method)}).",
        )
    if not _TOKEN.fullmatch(method):
        raise ReplayError(400, "The method must be a word like GET or POST.")
    target = _text(edits.get("path", capture.target), "path")
    room = line_limit - len(method) - _REQUEST_LINE
    if len(target) > room:
        raise ReplayError(
            400,
            f"The path may be at most {room} bytes with this method (a request line is at "
            f"most {line_limit} bytes, RELAY_MAX_REQUEST_LINE_BYTES); it has {len(target)}.",
        )
    if not _TARGET.fullmatch(target):
        raise ReplayError(
            400, "The path must start with / and hold no spaces or control characters."
        )
    headers = _headers(capture, edits, _host(capture, tunnel_host))
    body = _body(capture, edits, body_limit)
    if body or method in (b"POST", b"PUT", b"PATCH"):
        headers.append((b"content-length", str(len(body)).encode()))
    size = sum(len(n) + len(v) + _LINE for n, v in headers)
    if size > head_limit:
        longest = max(headers, key=lambda pair: len(pair[0]) + len(pair[1]))[0]
        raise ReplayError(
            400,
            f"The headers may be at most {head_limit} bytes together (RELAY_MAX_HEADER_BYTES); "
            f"these are {size}, the longest is {_shown(longest)!r}.",
        )
    try:
        h11.Request(method=method, target=target, headers=headers)
    except h11.LocalProtocolError as exc:
        raise _unsendable(exc) from None
    return method, target, headers, body


def _unsendable(exc: h11.LocalProtocolError) -> ReplayError:
    """What the checks above did not foresee, said for a person, not in h11's words only."""
    return ReplayError(
        400,
        "The request cannot be sent as HTTP/1.1: check its method, path and headers "
        f"(the relay's HTTP library says: {exc}).",
    )


async def replay(tunnel: Tunnel, capture: Capture, edits: dict[str, Any]) -> dict[str, Any]:
    """Send the request `build` makes on one of `tunnel`'s pool sockets; the new exchange's
    detail (relay.protocol.INSPECT_PATH). Raises ReplayError for what the site answers."""
    cfg = settings
    method, target, headers, body = build(
        capture,
        edits,
        cfg.RELAY_INSPECT_BODY_BYTES,
        cfg.RELAY_MAX_HEADER_BYTES,
        cfg.RELAY_MAX_REQUEST_LINE_BYTES,
        _tunnel_host(tunnel.name),
    )
    running = _running.get(tunnel, 0)
    if running >= INSPECT_REPLAY_MAX_CONCURRENT:
        raise ReplayError(
            429,
            f"The tunnel {tunnel.name} already has {running} replays in flight, as many as it "
            "takes at once; try again when one has finished.",
            RETRY_AFTER_BUSY_S,
        )
    _running[tunnel] = running + 1
    try:
        return await _send(tunnel, capture, method, target, headers, body)
    finally:
        left = _running[tunnel] - 1
        if left:
            _running[tunnel] = left
        else:
            del _running[tunnel]


async def _send(
    tunnel: Tunnel,
    capture: Capture,
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> dict[str, Any]:
    """One replay's exchange on a pool socket, captured with replay_of `capture.id`."""
    cfg = settings
    timeout = cfg.RELAY_RESPONSE_TIMEOUT_S
    if tunnel.quota is not None:  # the plan's limits, as for a visitor (relay/proxy/http.py)
        refusal = tunnel.quota.admit(tunnel, _scope(body), time.monotonic())
        if refusal is not None:
            raise ReplayError(*refusal)
    try:
        conn = await tunnel.acquire(cfg.RELAY_SOCKET_WAIT_S, cfg.RELAY_MAX_WAITERS, _REPLAY_VISITOR)
    except NoSocket as exc:
        raise ReplayError(exc.status, exc.message, exc.retry_after) from None
    captures = tunnel.captures
    new = (
        captures.begin(method.decode(), target.decode("latin-1"), headers, "", capture.id)
        if captures is not None
        else Capture(method.decode(), target.decode("latin-1"), headers, "", 0, capture.id)
    )
    new.request.add(body)
    tunnel.carried_request()
    tunnel.dirty = True
    tunnel.last_activity = time.monotonic()
    reusable = False
    error = "the replay was cancelled"
    try:
        async with asyncio.timeout(timeout):  # the whole exchange, however it dribbles
            count(tunnel, len(body))  # the account's day, as a visitor's body (exchange.py)
            try:
                conn.send(
                    h11.Request(method=method, target=target, headers=headers),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                )
            except h11.LocalProtocolError as exc:  # nothing was written: not the app's fault
                error = "400: the request could not be sent"
                raise _unsendable(exc) from None
            await conn.drain(timeout)
            tunnel.carried(len(body), 0)
            response = await read_response_head(conn, timeout)
            new.response_head(response.status_code, response.reason, response.headers)
            while True:
                event = await conn.next_event(timeout)
                if type(event) is h11.EndOfMessage:
                    break
                if type(event) is not h11.Data:
                    raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a body")
                try:
                    count(tunnel, len(event.data))
                except DayUsed:  # the rest is not read: the socket, mid-answer, is closed
                    error = "cut: the account's daily traffic allowance ran out"
                    return _finish(tunnel, new, error)
                new.response.add(event.data)
                tunnel.carried(0, len(event.data))
                if new.response.size > INSPECT_REPLAY_MAX_RESPONSE_BYTES:
                    error = f"cut: the answer passed {INSPECT_REPLAY_MAX_RESPONSE_BYTES} bytes"
                    return _finish(tunnel, new, error)
        reusable = conn.finish_exchange(bool(body))
        error = ""
        return _finish(tunnel, new, error)
    except DayUsed as exc:  # the body would pass the day's bytes: not sent, as a visitor's
        error = "429: the account's daily traffic allowance ran out"
        _finish(tunnel, new, error)
        raise ReplayError(*exc.refusal) from None
    except TimeoutError:
        error = f"504: no whole answer within {timeout:g} s"
        _finish(tunnel, new, error)
        raise ReplayError(
            504, f"The tunnel {tunnel.name} did not answer in full within {timeout:g} s."
        ) from None
    except FAILURES:
        error = "502: an invalid or incomplete response, or none"
        _finish(tunnel, new, error)
        raise ReplayError(
            502,
            f"The local app of the tunnel {tunnel.name} did not answer properly: is the app "
            "running, on the port given to lt?",
        ) from None
    finally:
        if not new.id:
            _finish(tunnel, new, error)
        if reusable:
            tunnel.release(conn)
        else:
            tunnel.discard(conn)


def _tunnel_host(name: str) -> bytes:
    """The tunnel's Host as visitors send it (relay.protocol.public_url's netloc)."""
    url = public_url(
        settings.RELAY_PUBLIC_SCHEME, name, settings.RELAY_DOMAIN, settings.RELAY_PUBLIC_PORT
    )
    return url.partition("://")[2].encode("ascii")


def _scope(body: bytes) -> dict[str, Any]:
    """What quota.admit reads of a visitor's ASGI scope, for a replay of `body`."""
    return {"headers": [(b"content-length", str(len(body)).encode())], "extensions": {}}


def _finish(tunnel: Tunnel, new: Capture, error: str) -> dict[str, Any]:
    if tunnel.captures is not None:
        tunnel.captures.finish(new, error)
    elif not new.id:
        new.error = error
        new.id = -1  # not kept: the tunnel's plan stopped inspection meanwhile
    return new.detail()
