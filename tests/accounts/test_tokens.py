from __future__ import annotations

from datetime import timedelta

from django.test import RequestFactory, TestCase, override_settings
from django.utils import timezone
from harness.accounts import basic, bearer, make_token, make_user

from tunnels import auth, tokens
from tunnels.auth import Refusal, authenticate
from tunnels.identity import credential
from tunnels.models import ApiToken


class TokenStorageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        cls.teammate = make_user("teammate")

    def test_a_new_token_reads_lt_then_prefix_then_secret(self) -> None:
        row, text = make_token(self.owner)
        self.assertTrue(text.startswith(f"lt_{row.prefix}"))
        self.assertEqual(len(text), tokens.TOKEN_LENGTH)

    def test_the_secret_is_stored_only_as_an_hmac_digest(self) -> None:
        row, text = make_token(self.owner)
        secret = text[len("lt_") + tokens.PREFIX_LENGTH :]
        stored = ApiToken.objects.get(pk=row.pk)
        self.assertNotIn(secret, stored.digest)
        self.assertEqual(stored.digest, tokens.digest(secret))
        self.assertEqual(len(stored.digest), 64)

    def test_two_tokens_never_share_a_prefix_or_a_secret(self) -> None:
        first, first_text = make_token(self.owner)
        second, second_text = make_token(self.owner)
        self.assertNotEqual(first.prefix, second.prefix)
        self.assertNotEqual(first_text, second_text)

    def test_a_token_resolves_to_its_own_user(self) -> None:
        _, owner_text = make_token(self.owner)
        _, teammate_text = make_token(self.teammate)
        self.assertEqual(authenticate(owner_text, "10.0.0.1").user_id, self.owner.pk)
        self.assertEqual(authenticate(teammate_text, "10.0.0.1").user_id, self.teammate.pk)

    def test_a_token_with_the_right_prefix_and_a_wrong_secret_is_refused(self) -> None:
        row, text = make_token(self.owner)
        forged = text[:-4] + ("aaaa" if not text.endswith("aaaa") else "bbbb")
        with self.assertRaises(Refusal) as caught:
            authenticate(forged, "10.0.0.1")
        self.assertEqual(caught.exception.status, 401)
        self.assertIn("not valid", caught.exception.message)

    def test_a_revoked_token_is_refused_with_401(self) -> None:
        row, text = make_token(self.owner)
        self.assertTrue(row.revoke())
        self.assertFalse(row.revoke(), "revoking twice reports that nothing changed")
        with self.assertRaises(Refusal) as caught:
            authenticate(text, "10.0.0.1")
        self.assertEqual(caught.exception.status, 401)
        self.assertIn("revoked", caught.exception.message)

    def test_an_expired_token_is_refused_with_401(self) -> None:
        row, text = make_token(self.owner, expires_in=timedelta(days=1))
        ApiToken.objects.filter(pk=row.pk).update(expires=timezone.now() - timedelta(seconds=1))
        with self.assertRaises(Refusal) as caught:
            authenticate(text, "10.0.0.1")
        self.assertIn("expired", caught.exception.message)

    def test_a_token_of_a_disabled_user_is_refused(self) -> None:
        _, text = make_token(self.teammate)
        self.teammate.is_active = False
        self.teammate.save()
        with self.assertRaises(Refusal) as caught:
            authenticate(text, "10.0.0.1")
        self.assertEqual(caught.exception.status, 401)

    def test_using_a_token_records_when_it_was_last_used(self) -> None:
        row, text = make_token(self.owner)
        self.assertIsNone(row.last_used)
        authenticate(text, "10.0.0.1")
        row.refresh_from_db()
        self.assertIsNotNone(row.last_used)

    @override_settings(RELAY_ALLOW_ANONYMOUS=True)
    def test_an_anonymous_visitor_is_owned_by_its_address_when_allowed(self) -> None:
        grant = authenticate(None, "10.0.0.9")
        self.assertEqual(grant.owner, "ip:10.0.0.9")
        self.assertTrue(grant.anonymous)

    @override_settings(RELAY_ALLOW_ANONYMOUS=False)
    def test_an_anonymous_visitor_is_refused_when_not_allowed(self) -> None:
        with self.assertRaises(Refusal) as caught:
            authenticate(None, "10.0.0.9")
        self.assertEqual(caught.exception.status, 401)
        self.assertIn("needs an API token", caught.exception.message)


class CredentialTests(TestCase):
    def setUp(self) -> None:
        self.factory = RequestFactory()

    def test_a_bearer_header_carries_the_token(self) -> None:
        request = self.factory.get("/?new", headers=bearer("lt_abc"))
        self.assertEqual(credential(request), "lt_abc")

    def test_basic_auth_carries_the_token_as_user_name_like_the_npm_client_sends_it(self) -> None:
        request = self.factory.get("/?new", headers=basic("lt_abc"))
        self.assertEqual(credential(request), "lt_abc")

    def test_basic_auth_may_carry_the_token_as_password(self) -> None:
        request = self.factory.get("/?new", headers=basic("alice", "lt_abc"))
        self.assertEqual(credential(request), "lt_abc")
        request = self.factory.get("/?new", headers=basic("", "lt_abc"))
        self.assertEqual(credential(request), "lt_abc")

    def test_no_header_means_no_credential(self) -> None:
        self.assertIsNone(credential(self.factory.get("/?new")))

    def test_an_unreadable_header_is_an_empty_credential_not_an_anonymous_one(self) -> None:
        for header in ("Basic !!!", "Digest abc", "Basic " + "bm9jb2xvbg"):
            request = self.factory.get("/?new", HTTP_AUTHORIZATION=header)
            self.assertEqual(credential(request), "", header)


OTHER_KEY = "another-secret-key-than-the-relays-0123456789-abcdefghijklmnop"


class TokenKeyTests(TestCase):
    """A token made under another SECRET_KEY (createtoken run without the relay's
    environment) is refused as such, and the relay can count such tokens."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")

    def test_a_token_records_a_fingerprint_of_its_key_but_not_the_key(self) -> None:
        row, _ = make_token(self.owner)
        with override_settings(SECRET_KEY=OTHER_KEY):
            other = tokens.key_fingerprint()
        self.assertEqual(ApiToken.objects.get(pk=row.pk).key_fingerprint, tokens.key_fingerprint())
        self.assertEqual(len(other), tokens.KEY_FINGERPRINT_LENGTH)
        self.assertNotEqual(other, tokens.key_fingerprint())
        self.assertNotIn(other, OTHER_KEY)

    def test_a_token_made_under_another_key_is_refused_naming_the_key(self) -> None:
        with override_settings(SECRET_KEY=OTHER_KEY):
            row, text = make_token(self.owner)
        with (
            self.assertLogs("tunnels.auth", "WARNING") as logs,
            self.assertRaises(Refusal) as caught,
        ):
            authenticate(text, "10.0.0.1")
        self.assertEqual(caught.exception.status, 401)
        self.assertIn("created under a different SECRET_KEY", caught.exception.message)
        self.assertIn("SECRET_KEY_FILE", caught.exception.message)
        self.assertNotIn("copied all of it", caught.exception.message)
        (line,) = logs.output
        self.assertIn(f"lt_{row.prefix}", line)
        self.assertIn("different SECRET_KEY", line)
        self.assertNotIn(text, line)  # the prefix only, never the secret

    def test_a_mistyped_token_under_the_relays_key_is_still_not_valid(self) -> None:
        _, text = make_token(self.owner)
        forged = text[:-4] + ("aaaa" if not text.endswith("aaaa") else "bbbb")
        with self.assertRaises(Refusal) as caught:
            authenticate(forged, "10.0.0.1")
        self.assertIn("not valid", caught.exception.message)

    def test_the_relay_counts_the_usable_tokens_made_under_another_key(self) -> None:
        with override_settings(SECRET_KEY=OTHER_KEY):
            make_token(self.owner, name="elsewhere")
            revoked, _ = make_token(self.owner, name="elsewhere, revoked")
            expired, _ = make_token(self.owner, name="elsewhere, expired")
        revoked.revoke()
        ApiToken.objects.filter(pk=expired.pk).update(expires=timezone.now() - timedelta(days=1))
        make_token(self.owner, name="here")
        legacy, _ = make_token(self.owner, name="before fingerprints")
        ApiToken.objects.filter(pk=legacy.pk).update(key_fingerprint="")
        self.assertEqual(auth.tokens_under_another_key(), 1)


class WhereToGetATokenTests(TestCase):
    """Users make their own tokens now: a refusal points at /account/ and `lt login`, not
    only at the operator."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")

    def refusal(self, credential_text: str | None) -> str:
        with self.assertRaises(Refusal) as caught:
            authenticate(credential_text, "10.0.0.1")
        return caught.exception.message

    def assert_says_where(self, message: str) -> None:
        self.assertIn("account page (/account/)", message)
        self.assertIn("`lt login --host URL`", message)
        self.assertNotIn("operator for", message)

    @override_settings(RELAY_ALLOW_ANONYMOUS=False)
    def test_no_token_says_where_to_make_one(self) -> None:
        self.assert_says_where(self.refusal(None))

    def test_an_unknown_token_says_where_to_make_one(self) -> None:
        self.assert_says_where(self.refusal("lt_not-a-real-token"))

    def test_a_revoked_token_says_where_to_make_one(self) -> None:
        row, text = make_token(self.owner)
        row.revoke()
        self.assert_says_where(self.refusal(text))

    def test_an_expired_token_says_where_to_make_one(self) -> None:
        row, text = make_token(self.owner, expires_in=timedelta(days=1))
        ApiToken.objects.filter(pk=row.pk).update(expires=timezone.now() - timedelta(seconds=1))
        self.assert_says_where(self.refusal(text))

    def test_a_token_of_another_secret_key_says_where_to_make_one(self) -> None:
        self.assert_says_where(auth.ANOTHER_KEY)
