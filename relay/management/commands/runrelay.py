"""`manage.py runrelay`: Daphne and the pool listeners on one event loop."""

from __future__ import annotations

import relay.run.loop_choice  # noqa: F401  isort:skip  (before Daphne creates its loop)
import relay.edge.server  # noqa: F401  isort:skip  (Daphne installs the asyncio reactor)

import fcntl
import os
import re
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import DatabaseError

from relay import address, records, request_settings
from relay.cluster.node import parse_address
from relay.protocol import HIGHEST_PORT
from relay.records import DatabaseInUse
from relay.run import console
from relay.run.runner import RelayRunner, check_pool_bind, listen_problem
from relay.run.tls import ReloadableTLS, TLSFilesError


class Command(BaseCommand):
    help = "Run the tunnel relay: the public site, the registration API and the pool ports."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=settings.RELAY_BIND, help="address to listen on")
        parser.add_argument(
            "--port", type=int, default=settings.RELAY_PORT, help="public port (0: any free)"
        )
        parser.add_argument(
            "--domain", default=settings.RELAY_DOMAIN, help="tunnels are <name>.<domain>"
        )
        # runrelay's own TLS (relay/run/tls.py): https on --port, SIGHUP reloads the files
        parser.add_argument(
            "--tls-cert",
            default=settings.RELAY_TLS_CERT,
            metavar="FILE",
            help="PEM certificate chain, leaf first (certbot's fullchain.pem): serve https",
        )
        parser.add_argument(
            "--tls-key", default=settings.RELAY_TLS_KEY, metavar="FILE", help="its private key"
        )
        parser.add_argument(
            "--http-redirect-port",
            type=int,
            default=settings.RELAY_HTTP_REDIRECT_PORT,
            metavar="N",
            help="also answer plain http on this port with redirects to https (0: off)",
        )
        # scale-out: one node of several on one database and one Redis
        parser.add_argument(
            "--node-name", default=settings.RELAY_NODE_NAME, help="this node's name (cluster)"
        )
        parser.add_argument(
            "--advertise",
            default=settings.RELAY_ADVERTISE,
            metavar="HOST:PORT",
            help="where peers reach this node; HOST is the pool address given to clients",
        )

    def execute(self, *args: object, **options: object) -> str | None:
        if options.get("stdout") is None and options.get("stderr") is None:
            # The real stdout/stderr (not call_command's): writes that never block or raise
            # (relay/run/console.py), for this command's messages and for every log line.
            out, err = console.install()
            # ConsoleStream is a TextIOBase; OutputWrapper only writes and flushes it.
            self.stdout = OutputWrapper(out)  # type: ignore[arg-type]
            self.stderr = OutputWrapper(err)  # type: ignore[arg-type]
            self.stderr.style_func = self.style.ERROR
        return super().execute(*args, **options)

    def handle(
        self,
        *args: object,
        bind: str,
        port: int,
        domain: str,
        node_name: str = "",
        advertise: str = "",
        tls_cert: str = "",
        tls_key: str = "",
        http_redirect_port: int = 0,
        **options: object,
    ) -> None:
        if not 0 <= port <= HIGHEST_PORT:
            raise CommandError(f"--port/RELAY_PORT {port} is not a TCP port (0-{HIGHEST_PORT})")
        tls = self.load_tls(tls_cert.strip(), tls_key.strip(), http_redirect_port)
        if tls is not None and node_name.strip():  # scale-out
            raise CommandError(
                "a cluster node cannot hold the certificate yet: nodes forward visitors to "
                "each other over plain http on their public port. Terminate TLS at the "
                "balancer in front of the nodes (docs/cluster.md) and drop --tls-cert/--tls-key"
            )
        domain = domain.strip().lower().rstrip(".")
        if not domain:
            raise CommandError("--domain must not be empty")
        # The same derived settings (ALLOWED_HOSTS, CSRF origins, pool address) as the
        # RELAY_DOMAIN/RELAY_BIND/RELAY_PORT variables give: relay/address.py.
        if tls is not None:
            address.apply_https(settings)  # before `apply`: the admin's origin is https
        address.apply(settings, domain=domain, bind=bind, port=port)
        request_settings.refresh()  # assigned above, without Django's setting_changed
        self.configure_node(node_name, advertise, bind)  # scale-out
        self.check_pool_address()
        self.database_locks = self.lock_database()  # held until the process ends
        if not settings.DEBUG:
            self.collect_static()
        runner = RelayRunner(
            bind=bind, port=port, out=self.stdout, tls=tls, redirect_port=http_redirect_port
        )
        try:
            runner.run()
        except OSError as exc:
            raise CommandError(f"cannot listen on {bind}:{port}: {exc}") from exc
        if runner.failed:
            raise CommandError(runner.failed)

    def load_tls(self, cert: str, key: str, redirect_port: int) -> ReloadableTLS | None:
        """The relay's certificate (both files or neither), or None: plain http."""
        if not 0 <= redirect_port <= HIGHEST_PORT:
            raise CommandError(
                f"--http-redirect-port/RELAY_HTTP_REDIRECT_PORT {redirect_port} is not a TCP "
                f"port (0-{HIGHEST_PORT})"
            )
        if bool(cert) != bool(key):
            raise CommandError(
                "--tls-cert and --tls-key (RELAY_TLS_CERT, RELAY_TLS_KEY) go together: "
                "give both files or neither"
            )
        if not cert:
            if redirect_port:
                raise CommandError(
                    "--http-redirect-port redirects to runrelay's own https: it needs "
                    "--tls-cert and --tls-key (behind a TLS proxy, let the proxy redirect)"
                )
            return None
        try:
            return ReloadableTLS(cert, key)
        except TLSFilesError as exc:
            raise CommandError(str(exc)) from None

    def check_pool_address(self) -> None:
        """Pool listeners open at each registration: fail now if none could."""
        try:
            check_pool_bind(settings.RELAY_POOL_BIND)
        except OSError as exc:
            where = settings.RELAY_POOL_BIND
            if settings.RELAY_EXPLICIT_SETTINGS.get("RELAY_POOL_BIND"):
                what = f"{where} for pool sockets (RELAY_POOL_BIND)"
            else:  # pools listen where the public side does
                what = f"{where} (--bind/RELAY_BIND, for the public port and pool sockets)"
            raise CommandError(listen_problem(what, exc)) from None

    def lock_database(self) -> list[object]:
        """One relay per database and node name (relay.records); the locks to keep."""
        try:
            return records.get().lock_database(settings.RELAY_NODE_NAME)
        except DatabaseInUse as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"cannot reach the database: {exc}") from None
        except OSError as exc:  # the SQLite lock file cannot be made (read-only folder...)
            raise CommandError(f"cannot lock the database for this relay: {exc}") from None

    def collect_static(self) -> None:
        """Production serves the admin's CSS from STATIC_ROOT (WhiteNoise reads it at start):
        collect it now, so it always matches the code. One relay at a time (flock on the dir)."""
        root = Path(settings.STATIC_ROOT)
        try:
            root.mkdir(parents=True, exist_ok=True)
            lock = os.open(root, os.O_RDONLY)  # the directory itself: no file to serve
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                call_command("collectstatic", interactive=False, verbosity=0)
            finally:
                os.close(lock)
        except OSError as exc:
            if (root / "staticfiles.json").is_file():
                self.stderr.write(f"warning: static files not refreshed in {root}: {exc}")
                return
            raise CommandError(
                f"cannot collect static files into STATIC_ROOT {root}: {exc}; make it "
                "writable, or run `manage.py collectstatic --noinput` there before runrelay"
            ) from None

    # --- scale-out --------------------------------------------------------------------------
    def configure_node(self, node_name: str, advertise: str, bind: str) -> None:
        node_name, advertise = node_name.strip(), advertise.strip()
        if not node_name:
            if advertise:
                raise CommandError("--advertise needs --node-name (RELAY_NODE_NAME) as well")
            return
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", node_name):
            raise CommandError(
                f"--node-name {node_name!r}: use 1-100 letters, digits, '.', '_' or '-'"
            )
        if settings.SECRET_KEY == settings.DEVELOPMENT_SECRET_KEY:
            raise CommandError(
                f"node {node_name}: a cluster node needs a SECRET_KEY of its own. Without one "
                "it would use the development key, which is public, and anyone could sign the "
                "hop markers nodes trust (and pass as any visitor address). Set SECRET_KEY (or "
                "SECRET_KEY_FILE) to the same random value on every node, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
            )
        if settings.RELAY_PUBLIC_SCHEME == "https" and not settings.RELAY_NODE_URL:
            raise CommandError(
                f"node {node_name}: RELAY_PUBLIC_SCHEME=https needs RELAY_NODE_URL, the https "
                "URL of this node (e.g. https://alpha.nodes.example, routed by your balancer or "
                "TLS proxy to this node alone): our lt opens its pool connections there, and "
                "the default, https:// + the advertised address, is this node's plain-http port"
            )
        if advertise:
            try:
                parse_address(advertise, "--advertise")
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc)) from None
        elif bind in {"0.0.0.0", "::", ""}:
            raise CommandError(
                f"--bind {bind or '*'} is a wildcard: give --advertise HOST:PORT "
                "(RELAY_ADVERTISE) so other nodes and clients know where to reach this one"
            )
        if not settings.REDIS_URL:
            self.stderr.write(
                "warning: no REDIS_URL: admin disconnects and ownership news reach only this "
                "node (the directory still refreshes from the database every heartbeat)"
            )
        settings.RELAY_NODE_NAME = node_name
        settings.RELAY_ADVERTISE = advertise
