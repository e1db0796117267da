"""The client's tunnel: register, keep the pool full, register again after faults, release
on exit.

`ClientTunnel.run()` is the whole life of a tunnel; the CLI and `open_tunnel` both drive it.
(The relay's live tunnel is `relay`'s `Tunnel`; this is the other end of it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .access import visitor_rules
from .backoff import delay_for
from .connect import is_lasting, plain_http_token_refusal, proxy_secrets
from .limit_lines import LimitLines
from .limits import CLIENT_ID_BYTES, LIMIT_POLL_S, MAX_DELAY_S
from .options import TunnelOptions, local_label, local_target, relay_connector, tcp_refusal
from .pool import Pool
from .pool_base import PoolBase
from .redact import redact, redact_url, secrets_of
from .registration import (
    REFUSAL_DISCONNECTED,
    REFUSAL_SUSPENDED,
    NoTcpTunnels,
    Registration,
    RegistrationError,
    RelayUnreachable,
    limit_reached,
    register,
    release,
)
from .reporting import LogReporter, RedactingReporter, Reporter, TunnelStatus
from .target import RequestLog
from .tcp_log import TcpConnectionLog
from .tcp_node import NODE_GONE, owner_node
from .tcp_pool import TcpPool

T = TypeVar("T")
HTTP_BAD_REQUEST = 400


def is_fatal(status: int, was_registered: bool) -> bool:
    """Whether a registration answer ends the client (with the relay's message).

    4xx answers are final, except 408 and a 429 once the tunnel has been up (a restarting
    relay may rate-limit a burst of re-registrations); 5xx and no answer are retried. A
    2xx other than 200 is how relays tell the npm client about errors: final too.
    """
    if status == 429:
        return not was_registered
    return 200 <= status < 300 or (400 <= status < 500 and status != 408)


class TunnelError(Exception):
    """The tunnel cannot go on: the relay refused it. `status` is the relay's HTTP status;
    `taken_over` when another client took the name with --takeover; `reason` the relay's
    X-Tunnelsite-Refusal (registration.REFUSAL_DISCONNECTED, REFUSAL_SUSPENDED: an operator
    disconnected or suspended the tunnel); `rules_refused` when the relay answered 400 to a
    registration that carried visitor rules (it did not accept them)."""

    def __init__(
        self, status: int, message: str, taken_over: bool = False, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.taken_over = taken_over
        self.reason = reason
        self.rules_refused = False

    @property
    def disconnected(self) -> bool:
        return self.reason == REFUSAL_DISCONNECTED

    @property
    def suspended(self) -> bool:
        return self.reason == REFUSAL_SUSPENDED


class CannotConnect(TunnelError):
    """The relay cannot be reached safely, and asking again will not change that: its
    certificate is refused (untrusted, or for another name), or the proxy refused CONNECT
    with a 4xx. Raised only before the tunnel was ever up (afterwards lt keeps trying, as for
    any unreachable relay, and shows the reason)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class WrongRelay(CannotConnect):
    """The relay answered, but does not offer what was asked (TCP tunnels): not a relay that
    cannot be reached, one that cannot serve this tunnel. Raised only before the tunnel was
    ever up."""


class ClientTunnel:
    """One tunnel of this client, from its first registration to its release."""

    def __init__(self, options: TunnelOptions, reporter: Reporter | None = None) -> None:
        parts = urlsplit(options.host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = redact_url(options.host)
            raise ValueError(f"host must be an http:// or https:// URL, not {shown!r}")
        self.connector = relay_connector(options)  # ValueError on a bad proxy variable
        refusal = plain_http_token_refusal(
            options.host, options.token, options.insecure, self.connector
        )
        if refusal:
            raise ValueError(refusal)
        refusal = tcp_refusal(options)
        if refusal:
            raise ValueError(refusal)
        if options.ca and not os.path.isfile(options.ca):
            raise ValueError(f"ca: no such file {options.ca!r}")
        # Who may visit: checked here for the library as the CLI checks its flags.
        self.rules = visitor_rules(
            options.basic_auth, options.cidr_allow, options.cidr_deny, options.private
        )
        if self.rules.passwords:
            refusal = plain_http_token_refusal(
                options.host,
                "(visitor passwords)",
                options.insecure,
                self.connector,
                what="visitor passwords (--basic-auth)",
            )
            if refusal:
                raise ValueError(refusal)
        self.access = self.rules.header_value()
        self.options = options
        # The token, the URL's user-info, a proxy's password and the visitors' passwords:
        # masked in all lt prints.
        self.secrets = secrets_of(options.host, options.token) | proxy_secrets(os.environ)
        self.secrets |= self.rules.secrets()
        self.reporter: Reporter = RedactingReporter(reporter or LogReporter(), self.secrets)
        self.status = TunnelStatus(relay=redact_url(options.host), visitors=self.rules.describe())
        self.target = local_target(options)
        # Where visitors' requests (HTTP) or connections (TCP) go, as messages name it.
        self.local = local_label(options) if options.tcp else self.target.label
        self.registration: Registration | None = None
        self.ready = asyncio.Event()  # set once the URL works (a first pool socket is up)
        self._announce = False  # the URL is new: tell the reporter when a socket is up
        self._stopping = asyncio.Event()
        self._name = options.subdomain  # after the first registration: the name we got
        # Who we are to the relay across reconnects (registration.CLIENT_ID_HEADER).
        self.client_id = secrets.token_urlsafe(CLIENT_ID_BYTES)
        self.taken_over = False
        self._online_at = 0  # sockets up when the tunnel counts as online (all, or the spares)

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
            self._set_error(f"local app at {self.local} unreachable: {reason}")

    def local_reachable(self) -> None:
        if self.status.local_down:
            self.status.local_down = False
            self.reporter.event(f"local app at {self.local} is answering again")
            self.reporter.changed()

    def count_bytes(self, received: int, sent: int) -> None:
        self.status.bytes_in += received
        self.status.bytes_out += sent

    # -- TcpObserver -----------------------------------------------------------------

    def connection_started(self) -> None:
        self.status.connections_open += 1
        self.reporter.changed()

    def connection_done(self, entry: TcpConnectionLog) -> None:
        self.status.connections_open -= 1
        self.status.connections += 1
        self.reporter.connection(entry)
        self.reporter.changed()

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
            if self.status.visitors:  # the rules this client asked for, no password
                self.reporter.event(f"visitors: {self.status.visitors}")
            if self.status.limits:  # the account's plan (docs/quotas.md)
                self.reporter.event(f"limits: {self.status.limits}")
            self.ready.set()
        if up >= self._online_at and was < up and self.status.state != "online":
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
                    reg = await self._until_stopped(self._register())
                except RegistrationError as exc:
                    if exc.taken_over:
                        self.taken_over = True
                        raise TunnelError(exc.status, exc.message, taken_over=True) from None
                    if exc.by_operator:  # lasting, at the first registration or any later
                        message = redact(exc.message, self.secrets)
                        raise TunnelError(exc.status, message, reason=exc.reason) from None
                    if isinstance(exc, NoTcpTunnels) and self.registration is None:
                        raise WrongRelay(redact(exc.message, self.secrets)) from None
                    if exc.lasting and self.registration is None:
                        raise CannotConnect(redact(exc.message, self.secrets)) from None
                    if is_fatal(exc.status, self.registration is not None):
                        error = TunnelError(exc.status, redact(exc.message, self.secrets))
                        error.rules_refused = exc.status == HTTP_BAD_REQUEST and bool(self.access)
                        raise error from None
                    reason = f"registration failed: {exc.message}"
                    retry_after = exc.retry_after_s
                except RelayUnreachable as exc:
                    if self.registration is None and is_lasting(exc.__cause__):
                        raise CannotConnect(redact(str(exc), self.secrets)) from None
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
                # The relay's sentences end with a full stop: "... the range).; registering
                # again" read as a typo.
                shown = reason.rstrip(".")
                self._set_state("reconnecting", f"{shown}; registering again in {delay:.1f} s")
                await self._until_stopped(asyncio.sleep(delay))
        finally:
            self.status.state = "stopped"
            self.status.sockets_up = 0

    async def _register(self) -> Registration:
        """Register (again): at --host, or first at the node that owns a TCP tunnel's port on a
        cluster (tcp_node.py), falling back to --host only when that node cannot be reached."""
        node = owner_node(self.options.host, self.registration)
        if node is not None:
            try:
                return await self._register_at(node)
            except RelayUnreachable:
                self.reporter.event(NODE_GONE)
        return await self._register_at(self.options.host)

    async def _register_at(self, host: str) -> Registration:
        return await register(
            host,
            self._name,
            self.options.token,
            connector=self.connector,
            client_id=self.client_id,
            takeover=self.options.takeover,
            pool_secret=self._pool_secret(),
            raw_pool=self.options.raw_pool,
            access=self.access,
            tcp=self.options.tcp,
            remote_port=self.options.remote_port,
        )

    def _pool_secret(self) -> str:
        """The last registration's pool secret, sent when registering the name again."""
        reg = self.registration
        return reg.pool_secret if reg is not None and reg.id == self._name else ""

    async def _serve(self, reg: Registration) -> tuple[str, bool]:
        """Run the pool of one registration until it breaks or stop().

        Returns why it broke and whether it carried traffic or stayed up a while."""
        first = self.registration is None
        changed = self.registration is not None and self.registration.url != reg.url
        self.registration = reg
        self._name = reg.id
        if reg.pool_secret:
            self.secrets.add(reg.pool_secret)  # never shown (RedactingReporter shares the set)
        self.status.url = redact_url(reg.url)
        self.status.limits = reg.limits
        self.status.sockets_max = reg.max_conn_count
        if self.options.tcp:
            self.status.forwarding = f"{self.status.url} -> {self.local}"
        if first or changed:
            self._announce = True
            if reg.cached_url:
                self.reporter.event(f"your cachedurl is: {reg.cached_url}")
        else:
            self.reporter.event(f"registered again as {reg.url}")
        self._set_state("connecting")
        pool: PoolBase
        if self.options.tcp:
            host = self.options.local_host or "localhost"
            pool = TcpPool(reg, host, self.options.port, self, self._on_sockets, self.connector)
            self._online_at = pool.spare
        else:
            pool = Pool(reg, self.target, self, self._on_sockets, self.connector)
            self._online_at = reg.max_conn_count
        watch = asyncio.ensure_future(self._watch_limits(reg)) if reg.limits else None
        try:
            reason = await self._until_stopped(pool.run())
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
        return f"lost the relay ({reason})", pool.healthy

    async def _watch_limits(self, reg: Registration) -> None:
        """Print a line when the account reaches one of its limits (docs/quotas.md): the
        tunnel's status, asked every LIMIT_POLL_S while the plan has limits."""
        lines = LimitLines()  # once per limit and window (limit_lines.py)
        while True:
            await asyncio.sleep(LIMIT_POLL_S)
            line = lines.line(await limit_reached(self.options.host, reg.id, self.connector))
            if line is not None:
                self.reporter.event(line)

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
            self.options.host,
            self.registration.id,
            self.options.token,
            connector=self.connector,
            client_id=self.client_id,
        )
