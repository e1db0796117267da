"""One tunnel: register, keep the pool full, register again after faults, release on exit.

`Tunnel.run()` is the whole life of a tunnel; the CLI and `open_tunnel` both drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from .backoff import MAX_DELAY_S, delay_for
from .pool import Pool
from .redact import redact, redact_url, secrets_of
from .registration import (
    Registration,
    RegistrationError,
    RelayUnreachable,
    register,
    release,
)
from .target import KeepAlive, LocalTarget, RequestLog

log = logging.getLogger("client")
T = TypeVar("T")

DEFAULT_HOST = "http://localhost:8080"


def is_fatal(status: int, was_registered: bool) -> bool:
    """Whether a registration answer ends the client (with the relay's message).

    4xx answers are final, except 408 and a 429 once the tunnel has been up (a restarting
    relay may rate-limit a burst of re-registrations); 5xx and no answer are retried. A
    2xx other than 200 is how relays tell the npm client about errors: final too.
    """
    if status == 429:
        return not was_registered
    return 200 <= status < 300 or (400 <= status < 500 and status != 408)


@dataclass
class TunnelOptions:
    port: int
    host: str = field(default=DEFAULT_HOST, repr=False)  # may hold a token (user-info)
    subdomain: str | None = None
    token: str | None = field(default=None, repr=False)
    local_host: str | None = None
    local_https: bool = False
    local_cert: str | None = None
    local_key: str | None = None
    local_ca: str | None = None
    allow_invalid_cert: bool = False
    takeover: bool = False  # take the name from a live client of the same owner (--takeover)
    # Keep connections to the local app between requests (False: --no-local-keepalive,
    # one connection per request: strict isolation between visitors, a little slower).
    local_keepalive: bool = True


@dataclass
class TunnelStatus:
    """What the display shows; updated in place by the tunnel."""

    url: str = ""
    relay: str = ""
    state: str = "connecting"
    sockets_up: int = 0
    sockets_max: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_error: str = ""
    local_down: bool = False


class TunnelError(Exception):
    """The tunnel cannot go on: the relay refused it. `status` is the relay's HTTP status;
    `taken_over` when another client took the name with --takeover."""

    def __init__(self, status: int, message: str, taken_over: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.taken_over = taken_over


class Reporter(Protocol):
    """Receives the tunnel's state changes (one call per change) and request logs."""

    def event(self, text: str) -> None: ...
    def url(self, url: str) -> None: ...
    def request(self, log: RequestLog) -> None: ...
    def changed(self) -> None: ...


class RedactingReporter:
    """Passes everything on with the run's secrets masked (see redact.py): relay
    messages, errors and URLs may all carry a token or a password."""

    def __init__(self, reporter: Reporter, secrets: set[str]) -> None:
        self.reporter = reporter
        self.secrets = secrets

    def event(self, text: str) -> None:
        self.reporter.event(redact(text, self.secrets))

    def url(self, url: str) -> None:
        self.reporter.url(redact(url, self.secrets))

    def request(self, log: RequestLog) -> None:
        self.reporter.request(log)  # a visitor's request line: the user's own traffic

    def changed(self) -> None:
        self.reporter.changed()


class LogReporter:
    """The library default: state changes go to the `client` logger."""

    def event(self, text: str) -> None:
        log.info("%s", text)

    def url(self, url: str) -> None:
        log.info("your url is: %s", url)

    def request(self, log_: RequestLog) -> None:
        log.debug("%s %s %s", log_.method, log_.target, log_.status)

    def changed(self) -> None:
        pass


def local_target(options: TunnelOptions) -> LocalTarget:
    """Where the pool sockets' requests go, with the TLS settings of --local-https."""
    context: ssl.SSLContext | None = None
    if options.local_https:
        context = ssl.create_default_context(cafile=options.local_ca)
        if options.local_cert:
            context.load_cert_chain(options.local_cert, options.local_key)
        if options.allow_invalid_cert:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return LocalTarget(
        host=options.local_host or "localhost",
        port=options.port,
        host_header=options.local_host,
        ssl_context=context,
        keepalive=KeepAlive(options.local_keepalive),
    )


class Tunnel:
    def __init__(self, options: TunnelOptions, reporter: Reporter | None = None) -> None:
        parts = urlsplit(options.host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = redact_url(options.host)
            raise ValueError(f"host must be an http:// or https:// URL, not {shown!r}")
        self.options = options
        self.secrets = secrets_of(options.host, options.token)
        self.reporter: Reporter = RedactingReporter(reporter or LogReporter(), self.secrets)
        self.status = TunnelStatus(relay=redact_url(options.host))
        self.target = local_target(options)
        self.registration: Registration | None = None
        self.ready = asyncio.Event()  # set once the URL works (a first pool socket is up)
        self._announce = False  # the URL is new: tell the reporter when a socket is up
        self._stopping = asyncio.Event()
        self._name = options.subdomain  # after the first registration: the name we got
        # Who we are to the relay across reconnects (registration.CLIENT_ID_HEADER).
        self.client_id = secrets.token_urlsafe(16)
        self.taken_over = False

    @property
    def url(self) -> str:
        return self.status.url

    def stop(self) -> None:
        self._stopping.set()

    # -- ProxyObserver -------------------------------------------------------------

    def request_done(self, entry: RequestLog) -> None:
        self.status.requests += 1
        self.reporter.request(entry)
        self.reporter.changed()

    def local_unreachable(self, reason: str) -> None:
        if not self.status.local_down:
            self.status.local_down = True
            self._set_error(f"local app at {self.target.label} unreachable: {reason}")

    def local_reachable(self) -> None:
        if self.status.local_down:
            self.status.local_down = False
            self.reporter.event(f"local app at {self.target.label} is answering again")
            self.reporter.changed()

    def count_bytes(self, received: int, sent: int) -> None:
        self.status.bytes_in += received
        self.status.bytes_out += sent

    def keepalive_off(self, reason: str) -> None:
        self.reporter.event(
            f"your app sent bytes after a response; keep-alive to it is now off ({reason}; "
            "from now on each request opens a connection of its own, so no visitor can get "
            "what the app wrote for another)"
        )

    # -- the life of the tunnel ----------------------------------------------------

    def _set_error(self, text: str) -> None:
        self.status.last_error = text = redact(text, self.secrets)
        self.reporter.event(text)
        self.reporter.changed()

    def _set_state(self, state: str, text: str | None = None) -> None:
        self.status.state = state
        if text:
            self.reporter.event(text)
        self.reporter.changed()

    def _on_sockets(self, up: int) -> None:
        was = self.status.sockets_up
        self.status.sockets_up = up
        if up and self._announce:
            self._announce = False
            self.reporter.url(self.status.url)
            self.ready.set()
        if up == self.status.sockets_max and was < up and self.status.state != "online":
            self._set_state("online", f"connected: {up}/{up} pool sockets to the relay")
        else:
            self.reporter.changed()

    async def run(self) -> None:
        """Run until stop(); raises TunnelError when the relay refuses the tunnel."""
        attempt = 0
        try:
            while not self._stopping.is_set():
                retry_after: float | None = None
                try:
                    reg = await self._until_stopped(
                        register(
                            self.options.host,
                            self._name,
                            self.options.token,
                            client_id=self.client_id,
                            takeover=self.options.takeover,
                        )
                    )
                except RegistrationError as exc:
                    if exc.taken_over:
                        self.taken_over = True
                        raise TunnelError(exc.status, exc.message, taken_over=True) from None
                    if is_fatal(exc.status, self.registration is not None):
                        message = redact(exc.message, self.secrets)
                        raise TunnelError(exc.status, message) from None
                    reason = f"registration failed: {exc.message}"
                    retry_after = exc.retry_after_s
                except RelayUnreachable as exc:
                    reason = f"relay {self.status.relay} unreachable: {exc}"
                else:
                    if reg is None:
                        break
                    reason, healthy = await self._serve(reg)
                    if self._stopping.is_set():
                        break
                    if healthy:
                        attempt = 0
                delay = delay_for(attempt)
                if retry_after is not None:
                    delay = min(MAX_DELAY_S, max(delay, retry_after))
                attempt += 1
                self.status.last_error = redact(reason, self.secrets)
                self._set_state("reconnecting", f"{reason}; registering again in {delay:.1f} s")
                await self._until_stopped(asyncio.sleep(delay))
        finally:
            self.status.state = "stopped"
            self.status.sockets_up = 0

    async def _serve(self, reg: Registration) -> tuple[str, bool]:
        """Run the pool of one registration until it breaks or stop().

        Returns why it broke and whether it carried traffic or stayed up a while."""
        first = self.registration is None
        changed = self.registration is not None and self.registration.url != reg.url
        self.registration = reg
        self._name = reg.id
        self.status.url = redact_url(reg.url)
        self.status.sockets_max = reg.max_conn_count
        if first or changed:
            self._announce = True
            if reg.cached_url:
                self.reporter.event(f"your cachedurl is: {reg.cached_url}")
        else:
            self.reporter.event(f"registered again as {reg.url}")
        self._set_state("connecting")
        pool = Pool(reg, self.target, self, self._on_sockets)
        reason = await self._until_stopped(pool.run())
        return f"lost the relay ({reason})", pool.healthy

    async def _until_stopped(self, coro: Coroutine[Any, Any, T]) -> T | None:
        """Await `coro` unless stop() comes first (then cancel it and return None)."""
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            stopper.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def release(self) -> int | None:
        """Free the name at the relay (DELETE); harmless if the relay does not know it."""
        if self.registration is None or self.taken_over:
            return None  # a name taken over is the other client's now
        return await release(
            self.options.host, self.registration.id, self.options.token, client_id=self.client_id
        )
