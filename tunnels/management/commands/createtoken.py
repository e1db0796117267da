"""`manage.py createtoken USERNAME`: issue an API token and print it (only it) on stdout.

How to use it goes to stderr, so `TOKEN=$(manage.py createtoken alice)` still works; that
line holds the token only when stdout is a terminal (a person reading, not a script whose
stderr may end up in a CI log).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from relay import protocol
from tunnels.auth import tokens_under_another_key
from tunnels.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user and print it. It is shown only this once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user the token acts for")
        parser.add_argument("--name", default="", help="what or who the token is for")
        parser.add_argument(
            "--expires", type=int, metavar="DAYS", help="expire after DAYS days (default: never)"
        )

    def handle(
        self, *args: object, username: str, name: str, expires: int | None, **_: object
    ) -> None:
        text = self.create(username, name, expires)
        self.stdout.write(text)
        shown = text if self.stdout.isatty() else "TOKEN"
        usage = f"Use it as: {protocol.lt_command(self.relay(), shown)}"
        if shown != text:
            usage += "   (TOKEN: the token printed on stdout)"
        self.stderr.write(usage, style_func=str)  # advice, not an error: no red
        others = tokens_under_another_key()
        if others:
            self.stderr.write(
                f"warning: {others} other usable token(s) in this database were created under "
                "a different SECRET_KEY than this command runs with, and a relay accepts only "
                "tokens made under its own key. Run createtoken with the relay's environment "
                "(the same SECRET_KEY or SECRET_KEY_FILE, and DATABASE_URL)."
            )

    def relay(self) -> str:
        """The relay's public URL, from the settings the relay itself uses."""
        port = settings.RELAY_PUBLIC_PORT or settings.RELAY_PORT
        return protocol.relay_url(settings.RELAY_PUBLIC_SCHEME, settings.RELAY_DOMAIN, port)

    def create(self, username: str, name: str = "", expires: int | None = None) -> str:
        if expires is not None and expires < 1:
            raise CommandError(f"--expires {expires}: give a number of days, 1 or more.")
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(
                f"There is no user {username!r}. Create one first: "
                "manage.py createsuperuser, or add one in the admin."
            ) from None
        if not user.is_active:
            raise CommandError(f"The user {username!r} is disabled; enable it in the admin first.")
        lifetime = timedelta(days=expires) if expires is not None else None
        _, text = ApiToken.issue(user, name=name, expires_in=lifetime)
        return text
