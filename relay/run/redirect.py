"""The plain-HTTP port of a relay that serves https itself (RELAY_HTTP_REDIRECT_PORT).

Every request is answered `308 Permanent Redirect` to the same path on https://, at the
relay's public https port (but a request with credentials: they crossed in clear, and a 400
says to revoke them); nothing is ever proxied or handed to Django. The head is parsed by
h11 within the relay's own bounds (RELAY_MAX_REQUEST_LINE_BYTES + RELAY_MAX_HEADER_BYTES)
and must arrive within RELAY_HEADER_TIMEOUT_S; garbage gets a 400, a slow head a 408, an
oversized one a 431; a peer that does not read its answer within that time is cut off.
Each connection carries one answer and is closed (`Connection: close`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import h11
from django.conf import settings
from twisted.internet import reactor as twisted_reactor
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from relay.edge.addresses import admit, release_address, too_many_message
from relay.protocol import error_status_for, relay_url

reactor: Any = twisted_reactor  # the Twisted boundary (see relay/run/runner.py)


# A DNS name and an optional port: nothing else may reach the Location header.
_HOST = re.compile(rb"([A-Za-z0-9.-]+)(?::[0-9]+)?")


def _host_name(host: bytes) -> str | None:
    """The name of a Host header if it is the relay's domain or one of its tunnels."""
    match = _HOST.fullmatch(host.strip())
    if match is None:
        return None
    name = match.group(1).decode("ascii").lower().rstrip(".")
    domain = settings.RELAY_DOMAIN
    if name == domain or name.endswith("." + domain):
        return name
    return None


class RedirectProtocol(Protocol):
    def __init__(self, https_port: Callable[[], int]) -> None:
        self.https_port = https_port
        self.parser = h11.Connection(
            h11.SERVER,
            max_incomplete_event_size=settings.RELAY_MAX_REQUEST_LINE_BYTES
            + settings.RELAY_MAX_HEADER_BYTES,
        )
        self.deadline: Any = None
        self.done = False
        self.address: str | None = None  # counted in relay/edge/addresses.py while open

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's names)
        # Counted with the https port's connections (RELAY_MAX_CONNECTIONS_PER_IP): one
        # address cannot hold this port's connections open by the thousand either.
        transport: Any = self.transport  # zope-typed (see `reactor`)
        key = admit(getattr(transport.getPeer(), "host", None))
        if key is None:
            self._answer(HTTPStatus.TOO_MANY_REQUESTS, too_many_message())
            return
        self.address = key or None
        self.deadline = reactor.callLater(settings.RELAY_HEADER_TIMEOUT_S, self._too_slow)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        key, self.address = self.address, None
        if key is not None:
            release_address(key)

    def _too_slow(self) -> None:
        if not self.done:
            self._answer(HTTPStatus.REQUEST_TIMEOUT, "the request's head took too long")
            self.deadline = reactor.callLater(settings.RELAY_HEADER_TIMEOUT_S, self._too_slow)
            return
        transport: Any = self.transport  # zope-typed (see `reactor`)
        transport.abortConnection()  # the answer is not being read: drop it

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.done:
            return  # a body or a pipelined request: the answer is already on its way
        try:
            self.parser.receive_data(data)
            event = self.parser.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
                self._answer(status, "the request's head is too large")
            else:
                self._answer(HTTPStatus.BAD_REQUEST, "malformed HTTP request")
            return
        if event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request):
            self._answer(HTTPStatus.BAD_REQUEST, "malformed HTTP request")
            return
        host = dict(event.headers).get(b"host", b"")
        name = _host_name(host)
        target = event.target.decode("ascii", "replace")
        if name is None:
            self._answer(HTTPStatus.BAD_REQUEST, "unknown Host: this relay serves only its domain")
        elif not target.startswith("/"):
            self._answer(HTTPStatus.BAD_REQUEST, "the request target must be a path")
        elif any(field.lower() == b"authorization" for field, _ in event.headers):
            # A token sent here crossed the network in clear (the npm client with
            # `--host http://TOKEN@relay`): a redirect would hide that and follow without it.
            origin = relay_url("https", name, self.https_port())
            agent = dict(event.headers).get(b"user-agent", b"")
            self._answer(
                error_status_for(agent, HTTPStatus.BAD_REQUEST),  # 203: npm prints it
                "This is the relay's plain-http port: the credentials in this request crossed "
                "the network unencrypted. Revoke that API token in the admin and use "
                f"{origin} instead.",
            )
        else:
            location = relay_url("https", name, self.https_port()) + target
            self._answer(HTTPStatus.PERMANENT_REDIRECT, f"use {location}", location)

    def _answer(self, status: int, message: str, location: str | None = None) -> None:
        self.done = True
        body = json.dumps({"message": message}).encode() + b"\n"
        phrase = HTTPStatus(status).phrase
        head = [
            f"HTTP/1.1 {status} {phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        if location is not None:
            head.append(f"Location: {location}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        transport: Any = self.transport  # zope-typed (see `reactor`), set once connected
        transport.write(data)
        transport.loseConnection()


class RedirectFactory(Factory):
    """`https_port()` gives the port https URLs name (RELAY_PUBLIC_PORT or the real one)."""

    def __init__(self, https_port: Callable[[], int]) -> None:
        self.https_port = https_port

    def buildProtocol(self, addr: Any) -> RedirectProtocol:  # noqa: N802
        protocol = RedirectProtocol(self.https_port)
        protocol.factory = self
        return protocol
