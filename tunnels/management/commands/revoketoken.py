"""`manage.py revoketoken PREFIX_OR_TOKEN`: revoke an API token and close its tunnels."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tunnels import actor, tokens
from tunnels.control import revoke_tokens
from tunnels.models import ApiToken


class Command(BaseCommand):
    help = "Revoke an API token, given the whole token or its prefix (as the admin lists it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("token", metavar="PREFIX_OR_TOKEN")

    def handle(self, *args: object, token: str, **_: object) -> None:
        with actor.acting("manage.py revoketoken"):
            self.stdout.write(self.revoke(token))
        if not settings.REDIS_URL:
            # The in-memory channel layer lives inside the relay process: this command
            # cannot reach it; the relay finds the revoked token at its next check.
            self.stderr.write(
                "Note: without REDIS_URL this command cannot tell a running relay at once; the "
                f"relay closes the token's live tunnels at its next token check (within "
                f"RELAY_FLUSH_S, {settings.RELAY_FLUSH_S:g} s), and refuses it from now on."
            )

    def revoke(self, given: str) -> str:
        token = self.find(given)
        if not revoke_tokens([token]):
            return f"{token} was already revoked."
        return f"Revoked {token} of {token.user}."

    def find(self, given: str) -> ApiToken:
        given = given.strip()
        parts = tokens.split(given)
        if parts is not None:
            prefix = parts[0]
        else:
            prefix = given.removeprefix(tokens.TOKEN_MARK).removesuffix("…")
        if len(prefix) != tokens.PREFIX_LENGTH:
            raise CommandError(
                f"{given!r} is neither a token nor a token prefix "
                f"({tokens.PREFIX_LENGTH} characters after lt_, as the admin lists it)."
            )
        token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
        if token is None:
            raise CommandError(f"No API token has the prefix {prefix!r}; see the admin's list.")
        if parts is not None and not tokens.matches(parts[1], token.digest):
            raise CommandError("That token's prefix exists but the rest does not match it.")
        return token
