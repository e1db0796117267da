"""`manage.py runrelay`: Daphne and the pool listeners on one event loop."""

from __future__ import annotations

import relay.loop_choice  # noqa: F401  isort:skip  (before Daphne creates its loop)
import relay.server  # noqa: F401  isort:skip  (Daphne installs the asyncio reactor)

import fcntl
import os
import re
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from relay.cluster import parse_address
from relay.runner import RelayRunner


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

    def handle(
        self,
        *args: object,
        bind: str,
        port: int,
        domain: str,
        node_name: str = "",
        advertise: str = "",
        **options: object,
    ) -> None:
        if not 0 <= port <= 65535:
            raise CommandError(f"--port {port} is not a TCP port (0-65535)")
        domain = domain.strip().lower().rstrip(".")
        if not domain:
            raise CommandError("--domain must not be empty")
        settings.RELAY_DOMAIN = domain
        self.configure_node(node_name, advertise, bind)  # scale-out
        if not settings.DEBUG:
            self.collect_static()
        runner = RelayRunner(bind=bind, port=port, out=self.stdout)
        try:
            runner.run()
        except OSError as exc:
            raise CommandError(f"cannot listen on {bind}:{port}: {exc}") from exc
        if runner.failed:
            raise CommandError(runner.failed)

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
