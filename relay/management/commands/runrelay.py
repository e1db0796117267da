"""`manage.py runrelay`: Daphne and the pool listeners on one event loop."""

from __future__ import annotations

import relay.server  # noqa: F401  isort:skip  (Daphne installs the asyncio reactor first)

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

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

    def handle(self, *args: object, bind: str, port: int, domain: str, **options: object) -> None:
        if not 0 <= port <= 65535:
            raise CommandError(f"--port {port} is not a TCP port (0-65535)")
        domain = domain.strip().lower().rstrip(".")
        if not domain:
            raise CommandError("--domain must not be empty")
        settings.RELAY_DOMAIN = domain
        runner = RelayRunner(bind=bind, port=port, out=self.stdout)
        try:
            runner.run()
        except OSError as exc:
            raise CommandError(f"cannot listen on {bind}:{port}: {exc}") from exc
        if runner.failed:
            raise CommandError(runner.failed)
