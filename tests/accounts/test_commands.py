from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase, override_settings
from harness.accounts import make_token, make_user

from tunnels import tokens
from tunnels.auth import authenticate
from tunnels.models import ApiToken


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class CreateTokenTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")

    def test_it_prints_only_the_token_and_the_token_works(self) -> None:
        out, err = run("createtoken", "owner", "--name", "ci")
        text = out.strip()
        self.assertEqual(out, text + "\n")
        # How to use it, on stderr; the token itself only when stdout is a terminal.
        self.assertIn("Use it as: lt --port 3000 --host http://localhost:", err)
        self.assertIn("--token TOKEN", err)
        self.assertNotIn(text, err)
        self.assertEqual(len(text), tokens.TOKEN_LENGTH)
        self.assertEqual(authenticate(text, "10.0.0.1").user_id, self.owner.pk)
        self.assertEqual(ApiToken.objects.get().name, "ci")

    def test_it_warns_when_the_other_tokens_were_made_under_another_secret_key(self) -> None:
        with override_settings(SECRET_KEY="the-relays-own-key-0123456789-abcdefghijklmnopqrst"):
            make_token(self.owner, name="made with the relay's environment")
        out, err = run("createtoken", "owner")
        self.assertEqual(len(out.strip()), tokens.TOKEN_LENGTH)  # stdout: the token only
        self.assertIn("1 other usable token(s) in this database were created under a", err)
        self.assertIn("Run createtoken with the relay's environment", err)

    def test_it_sets_an_expiry_in_days(self) -> None:
        run("createtoken", "owner", "--expires", "30")
        token = ApiToken.objects.get()
        lifetime = (token.expires - token.created).total_seconds()
        self.assertAlmostEqual(lifetime, 30 * 86400, delta=60)

    def test_an_unknown_user_is_a_clear_error(self) -> None:
        with self.assertRaisesMessage(CommandError, "There is no user 'nobody'"):
            run("createtoken", "nobody")
        self.assertFalse(ApiToken.objects.exists())

    def test_a_disabled_user_gets_no_token(self) -> None:
        make_user("gone", is_active=False)
        with self.assertRaisesMessage(CommandError, "disabled"):
            run("createtoken", "gone")

    def test_a_zero_day_expiry_is_refused(self) -> None:
        with self.assertRaisesMessage(CommandError, "--expires 0"):
            run("createtoken", "owner", "--expires", "0")


class RevokeTokenTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")

    def test_it_revokes_by_prefix_as_the_admin_shows_it(self) -> None:
        row, _ = make_token(self.owner)
        out, _ = run("revoketoken", f"lt_{row.prefix}…")
        self.assertIn("Revoked", out)
        row.refresh_from_db()
        self.assertTrue(row.revoked)

    def test_its_operator_action_line_names_the_command_as_who_acted(self) -> None:
        row, _ = make_token(self.owner)
        with self.assertLogs("tunnels.control", "INFO") as logged:
            run("revoketoken", row.prefix)
        (record,) = logged.records
        self.assertEqual(record.by, "manage.py revoketoken")  # type: ignore[attr-defined]
        self.assertEqual(record.tokens, [row.pk])  # type: ignore[attr-defined]

    def test_it_revokes_by_the_whole_token(self) -> None:
        row, text = make_token(self.owner)
        run("revoketoken", text)
        row.refresh_from_db()
        self.assertTrue(row.revoked)

    @override_settings(REDIS_URL="")
    def test_without_redis_it_says_the_relay_closes_live_tunnels_at_its_next_check(self) -> None:
        row, _ = make_token(self.owner)
        _, err = run("revoketoken", row.prefix)
        self.assertIn("cannot tell a running relay at once", err)
        self.assertIn("within RELAY_FLUSH_S", err)

    @override_settings(REDIS_URL="redis://127.0.0.1:6379/0")
    def test_with_redis_it_gives_no_such_warning(self) -> None:
        row, _ = make_token(self.owner)
        _, err = run("revoketoken", row.prefix)
        self.assertEqual(err, "")

    def test_revoking_twice_says_so(self) -> None:
        row, _ = make_token(self.owner)
        run("revoketoken", row.prefix)
        out, _ = run("revoketoken", row.prefix)
        self.assertIn("already revoked", out)

    def test_an_unknown_prefix_is_a_clear_error(self) -> None:
        with self.assertRaisesMessage(CommandError, "No API token has the prefix"):
            run("revoketoken", "zzzzzzzz")

    def test_a_malformed_argument_is_a_clear_error(self) -> None:
        with self.assertRaisesMessage(CommandError, "neither a token nor a token prefix"):
            run("revoketoken", "abc")
