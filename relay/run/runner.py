"""Start and stop a relay process: Daphne, the registry, signals, a bounded drain."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import signal
import socket
import threading
from typing import Any, TextIO

from channels.routing import get_default_application
from django.conf import settings
from django.core.management.base import OutputWrapper
from django.utils import timezone
from twisted.internet import reactor as twisted_reactor
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.error import CannotListenError, ReactorNotRunning

from relay import address, database, records, request_settings, traffic
from relay.cluster import control
from relay.cluster.node import Cluster
from relay.edge.server import RelayServer
from relay.pool.registry import get_registry
from relay.protocol import (
    APPLICATION_CLOSE_TIMEOUT_S,
    LISTEN_POLL_S,
    PUBLIC_LISTEN_BACKLOG,
    START_TIMEOUT_S,
    STOP_MARGIN_S,
    public_url,
)
from relay.run import heap, metrics_listener
from relay.run.redirect import RedirectFactory
from relay.run.tls import ReloadableTLS, TLSFilesError

logger = logging.getLogger(__name__)

# Twisted declares the reactor's methods on zope interfaces, without `self`: mypy cannot call
# them through those types, so the reactor is untyped here (the Twisted boundary).
reactor: Any = twisted_reactor


_LISTEN_HINTS = {
    errno.EADDRINUSE: "another process listens there: stop it or choose another port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
}


def listen_problem(what: str, exc: BaseException) -> str:
    """One line saying why `what` (e.g. "127.0.0.1:8080 (--bind/--port)") is unusable."""
    cause = getattr(exc, "socketError", exc)  # Twisted wraps the OSError
    if isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror
        hint = _LISTEN_HINTS.get(cause.errno or 0, "")
    elif isinstance(cause, (OSError, ValueError)):
        reason, hint = str(cause) or type(cause).__name__, ""
    else:
        reason, hint = str(cause), ""
    return f"cannot listen on {what}: {reason}" + (f" ({hint})" if hint else "")


def check_pool_bind(address: str) -> None:
    """Pool listeners open at each registration: an address this machine cannot listen on
    would fail every one of them, so fail at start instead (OSError)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))


def raise_open_file_limit() -> int:
    """Each tunnel holds up to max_conn_count sockets: take every descriptor allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _escape(address: str) -> str:
    """Twisted endpoint strings use ':' as a separator; IPv6 colons need a backslash."""
    return address.replace(":", "\\:")


class RelayRunner:
    def __init__(
        self,
        bind: str,
        port: int,
        out: TextIO | OutputWrapper,
        tls: ReloadableTLS | None = None,
        redirect_port: int = 0,
    ) -> None:
        self.bind = bind
        self.port = port
        self.out = out
        self.tls = tls  # runrelay's own certificate: https on `port` (relay/run/tls.py)
        self.redirect_port = redirect_port  # plain http that only redirects to https
        self._redirect_listener: Any = None
        self.failed = ""
        self._stopping = False
        # Sessions opened before this are an earlier run's; this run's are its own, also
        # those registered before the stale ones are closed (the listener is open by then).
        self.started_at = timezone.now()
        self._control: asyncio.Task[None] | None = None  # the admin's disconnects
        self._listen_address: tuple[str, int] | None = None  # scale-out: default advertise
        self.cluster: Cluster | None = None  # scale-out
        self._sampler: asyncio.Task[None] | None = None  # the dashboard's traffic history
        self._metrics: metrics_listener.MetricsListener | None = None  # RELAY_METRICS_BIND
        backlog = PUBLIC_LISTEN_BACKLOG  # Twisted's 50 dropped the SYNs of a burst
        endpoints = [f"tcp:port={port}:interface={_escape(bind)}:backlog={backlog}"]
        ready: dict[str, Any] = {}
        if tls is not None:  # Daphne's "ssl:" strings cannot reload: a ready endpoint
            endpoint = SSL4ServerEndpoint(reactor, port, tls, backlog=backlog, interface=bind)
            endpoints, ready = [], {"tls": endpoint}
        self.server = RelayServer(
            get_default_application(),  # settings.ASGI_APPLICATION: tunnelsite/asgi.py
            endpoints=endpoints,
            ready_endpoints=ready,
            signal_handlers=False,
            on_listen=self._listening,
            application_close_timeout=APPLICATION_CLOSE_TIMEOUT_S,
            websocket_timeout=-1,
            verbosity=0,
        )

    def _print(self, line: str) -> None:
        # Output is never a reason to stop serving or to ignore a signal (relay/run/console.py
        # makes stdout non-blocking; this also covers an `out` that raises).
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass

    def _listening(self, host: str, port: int) -> None:
        self._listen_address = (host, port)  # scale-out
        if self.port == 0:  # "any free port": what depends on the port follows the real one
            address.apply(settings, domain=settings.RELAY_DOMAIN, bind=self.bind, port=port)
            request_settings.refresh()
        public_port = settings.RELAY_PUBLIC_PORT or port
        sample = public_url(
            settings.RELAY_PUBLIC_SCHEME, "<name>", settings.RELAY_DOMAIN, public_port
        )
        where = f"[{host}]" if ":" in host else host
        scheme = "https" if self.tls is not None else "http"
        self._print(f"tunnelsite relay listening on {scheme}://{where}:{port}")
        if self.tls is not None:
            self._print(f"TLS certificate: {self.tls.loaded.describe()}")
        if self._redirect_listener is not None:
            redirect = self._redirect_listener.getHost().port
            self._print(f"http://{where}:{redirect} redirects to https")
        self._print(f"tunnels are served at {sample}")
        pool = settings.RELAY_POOL_PORTS
        pool_text = f"{pool[0]}-{pool[1]}" if pool else "ephemeral"
        if settings.RELAY_RAW_POOLS:
            self._print(f"pool ports: {pool_text} on {settings.RELAY_POOL_BIND}")
        else:  # our lt's pool connections upgrade on the public port; npm clients are refused
            self._print("pool ports: none (RELAY_RAW_POOLS=false: tunnelsite's lt only)")
        tcp = settings.RELAY_TCP_PORTS
        if tcp:  # `lt tcp`: visitors connect to these ports, which the firewall must let in
            self._print(
                f"TCP tunnels: ports {tcp[0]}-{tcp[1]} on {settings.RELAY_TCP_BIND}, "
                f"named tcp://{settings.RELAY_TCP_HOST}:PORT"
            )
        else:
            self._print("TCP tunnels: off (set RELAY_TCP_PORTS, e.g. 20000-20999)")
        self._print_metrics()

    def _print_metrics(self) -> None:
        """Where /metrics is served (docs/metrics.md), or how to turn it on."""
        if self._metrics is not None:
            self._print(f"metrics: {self._metrics.url} (RELAY_METRICS_BIND, no token)")
        if settings.RELAY_METRICS_TOKEN:
            self._print("metrics: /metrics on the bare domain, with the RELAY_METRICS_TOKEN bearer")
        if self._metrics is None and not settings.RELAY_METRICS_TOKEN:
            self._print("metrics: off (set RELAY_METRICS_TOKEN or RELAY_METRICS_BIND)")

    def https_port(self) -> int:
        """The port https URLs name: RELAY_PUBLIC_PORT, else the one the relay listens on."""
        if settings.RELAY_PUBLIC_PORT:
            return int(settings.RELAY_PUBLIC_PORT)
        return self._listen_address[1] if self._listen_address else self.port

    def run(self) -> None:
        limit = raise_open_file_limit()
        if settings.RELAY_METRICS_BIND:  # bound now: an address it cannot have stops the start
            try:
                sock = metrics_listener.bind(settings.RELAY_METRICS_BIND)
            except OSError as exc:
                self.failed = listen_problem(
                    f"{settings.RELAY_METRICS_BIND} (RELAY_METRICS_BIND, for /metrics)", exc
                )
                return
            self._metrics = metrics_listener.MetricsListener(sock)
        if self.redirect_port:
            try:
                self._redirect_listener = reactor.listenTCP(
                    self.redirect_port,
                    RedirectFactory(self.https_port),
                    backlog=PUBLIC_LISTEN_BACKLOG,
                    interface=self.bind,
                )
            except CannotListenError as exc:
                where = f"[{self.bind}]" if ":" in self.bind else self.bind
                self.failed = listen_problem(
                    f"{where}:{self.redirect_port} "
                    "(--http-redirect-port, RELAY_HTTP_REDIRECT_PORT)",
                    exc,
                )
                return
        reactor.callWhenRunning(self._started, limit)
        heap.settle()  # everything is built: set it aside from the collector
        try:
            self.server.run()
        finally:
            if self._metrics is not None:
                self._metrics.close()
        if self.server.listen_failure is not None and not self.failed:
            where = f"[{self.bind}]" if ":" in self.bind else self.bind
            self.failed = listen_problem(
                f"{where}:{self.port} (--bind/--port, RELAY_BIND/RELAY_PORT)",
                self.server.listen_failure,
            )

    def _started(self, limit: int) -> None:
        loop = asyncio.get_event_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        # certbot's deploy hook, `kill -HUP` or `systemctl reload`: reload the certificate.
        # Without one SIGHUP still stops nothing: a unit's ExecReload copied from a TLS relay
        # must not take every tunnel of a relay behind a proxy down.
        loop.add_signal_handler(signal.SIGHUP, self.reload_tls)
        if self._metrics is not None:  # its socket is bound: served from now on
            loop.create_task(self._metrics.start())
        loop.create_task(self._start_registry(limit))

    async def _start_registry(self, limit: int) -> None:
        try:
            closed = await database.call(records.get().close_stale_sessions, self.started_at)
        except Exception as exc:  # the database is unreachable: say so and stop
            self.failed = f"cannot reach the database: {exc}"
            self.server.stop()
            return
        if closed:
            logger.info("marked %d sessions of an earlier run as closed", closed)
        await self._check_token_keys()
        if settings.RELAY_NODE_NAME and not await self._join_cluster():  # scale-out
            return
        registry = get_registry()
        registry.start()
        await self._load_suspensions()
        loop = asyncio.get_running_loop()
        self._control = loop.create_task(control.listen())
        self._sampler = loop.create_task(
            traffic.run_sampler(
                registry, node=settings.RELAY_NODE_NAME, flush_s=settings.RELAY_FLUSH_S
            )
        )
        logger.debug("open-file limit %d", limit)

    async def _load_suspensions(self) -> None:
        """The names, tokens and users operators suspended, for their visitors' page and
        refusals (the database refuses their registrations too: tunnels/auth.py; the registry
        checks again in memory, after that check)."""
        try:
            names = await database.call(records.get().suspended_names)
            tokens, users = await database.call(records.get().suspended_ids)
        except Exception:
            logger.exception("could not read the suspended tunnel names, tokens and users")
            return
        get_registry().sanctions.replace(names, tokens, users)
        if names:
            logger.info("%d suspended tunnel name(s)", len(names))

    async def _check_token_keys(self) -> None:
        """Warn when usable tokens were made under another SECRET_KEY: all are refused."""
        try:
            count = await database.call(records.get().tokens_under_another_key)
        except Exception:
            logger.exception("could not check the API tokens' key fingerprints")
            return
        if count:
            logger.warning(
                "%d usable API token(s) were created under a different SECRET_KEY than this "
                "relay's and will be refused. createtoken must run with the relay's environment "
                "(the same SECRET_KEY or SECRET_KEY_FILE): create them again that way, or start "
                "the relay with the key they were made with.",
                count,
            )

    def reload_tls(self) -> None:
        """New connections get the files' certificate now; live ones keep theirs."""
        if self.tls is None:
            self._print("SIGHUP: this relay has no TLS certificate to reload; nothing changed")
            return
        try:
            loaded = self.tls.reload()
        except TLSFilesError as exc:
            self._print(f"kept the TLS certificate in use: {exc}")
            return
        self._print(f"reloaded the TLS certificate: {loaded.describe()}")

    def _stop_listening(self) -> None:
        self.server.stop_listening()
        if self._redirect_listener is not None:
            self._redirect_listener.stopListening()
            self._redirect_listener = None

    def stop(self) -> None:
        if self._stopping:  # a second signal: the operator does not want to wait
            self._print("stopping now")
            self._stop_reactor()
            return
        self._stopping = True
        loop = asyncio.get_event_loop()
        loop.create_task(self._shutdown())
        # Whatever the shutdown waits on (a stuck database, a peer), the relay stops in time.
        limit = settings.RELAY_DRAIN_S + STOP_MARGIN_S
        loop.call_later(limit, self._stop_overdue, limit)
        last_resort = threading.Timer(limit + STOP_MARGIN_S, os._exit, (1,))
        last_resort.daemon = True
        last_resort.start()
        self._print("stopping: no new connections; finishing requests in flight")

    def _stop_overdue(self, limit: float) -> None:
        self._print(f"the shutdown took more than {limit:g} s; stopping now")
        self._stop_reactor()

    def _stop_reactor(self) -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:  # already stopping
            pass

    # --- scale-out ----------------------------------------------------------------------------
    async def _join_cluster(self) -> bool:
        """Start heartbeats as node RELAY_NODE_NAME; False (and stop) if that fails."""
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while self._listen_address is None:
                    await asyncio.sleep(LISTEN_POLL_S)
            host, port = self._listen_address
            advertise = settings.RELAY_ADVERTISE
            if not advertise:
                advertise = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self.cluster = Cluster(get_registry(), settings.RELAY_NODE_NAME, advertise)
            async with asyncio.timeout(START_TIMEOUT_S):
                await self.cluster.start()
        except Exception as exc:
            self.failed = f"cannot join the cluster as node {settings.RELAY_NODE_NAME}: {exc}"
            self.server.stop()
            return False
        get_registry().cluster = self.cluster
        self._print(f"node {self.cluster.node} advertised as {self.cluster.advertise}")
        return True

    # --- end scale-out ------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        registry = get_registry()
        try:
            if self.cluster is not None:  # scale-out
                # Keep listening while requests finish: /healthz says 503 so the balancer
                # moves visitors away, and peers still reach our tunnels. Stop listening
                # before the tunnels close, so their clients re-register on another node.
                await self.cluster.drain()
                finished = await registry.drain(settings.RELAY_DRAIN_S)
                self._stop_listening()
            else:
                self._stop_listening()
                finished = await registry.drain(settings.RELAY_DRAIN_S)
            if not finished:
                self._print(f"{registry.in_flight} requests still running; closing them")
            await traffic.write_last_minutes(registry, settings.RELAY_NODE_NAME)  # dashboard
            await registry.shutdown()
            if self.cluster is not None:  # scale-out
                await self.cluster.stop()
        except Exception:
            logger.exception("error while shutting down")
        finally:
            # The control listener runs until the tunnels are closed: while requests drain,
            # the admin can still disconnect and peers can still ask for a name back.
            for task in (self._control, self._sampler):
                if task is not None:
                    task.cancel()
            self._print("stopped")
            self._stop_reactor()
