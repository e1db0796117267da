"""Self sign-up (tunnels/signup.py): closed unless ACCOUNT_SIGNUP_OPEN, then Django's
UserCreationForm with the password validators, limited per address, landing on /account/;
and the sign-in's default landing is the account page too."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import TestCase, override_settings
from harness.accounts import make_user

from tunnels import signup

SIGNUP = "/accounts/signup/"
GOOD = {
    "username": "newcomer",
    "password1": "a-long-pass-phrase-9",
    "password2": "a-long-pass-phrase-9",
}


class ClosedSignUpTests(TestCase):
    def test_by_default_the_page_is_a_404_that_says_whom_to_ask(self) -> None:
        for method in (self.client.get, self.client.post):
            with self.subTest(method=method.__name__):
                answer = method(SIGNUP, GOOD) if method == self.client.post else method(SIGNUP)
                self.assertContains(answer, "Sign-up is closed", status_code=404)
                self.assertContains(answer, "Ask its operator", status_code=404)
        self.assertFalse(User.objects.filter(username="newcomer").exists())

    def test_the_landing_page_offers_no_sign_up(self) -> None:
        page = self.client.get("/")
        self.assertContains(page, 'href="/account/"')
        self.assertNotContains(page, SIGNUP)


@override_settings(ACCOUNT_SIGNUP_OPEN=True)
class OpenSignUpTests(TestCase):
    def setUp(self) -> None:
        cache.clear()  # the per-address limit lives in the cache

    def test_the_landing_page_links_to_it(self) -> None:
        self.assertContains(self.client.get("/"), f'href="{SIGNUP}"')

    def test_a_new_user_is_made_signed_in_and_lands_on_their_account_page(self) -> None:
        answer = self.client.post(SIGNUP, GOOD)
        self.assertRedirects(answer, "/account/", fetch_redirect_response=False)
        user = User.objects.get(username="newcomer")
        self.assertFalse(user.is_staff)
        self.assertEqual(int(self.client.session["_auth_user_id"]), user.pk)
        self.assertContains(self.client.get("/account/"), "Signed in as <strong>newcomer</strong>")

    def test_a_weak_password_or_a_taken_name_is_refused_with_the_form(self) -> None:
        make_user("taken")
        for form, says in (
            ({**GOOD, "password1": "123", "password2": "123"}, "This password is too short."),
            ({**GOOD, "password2": "something-else-1"}, "The two password fields"),
            ({**GOOD, "username": "taken"}, "A user with that username already exists."),
        ):
            with self.subTest(says=says):
                answer = self.client.post(SIGNUP, form)
                self.assertContains(answer, says, status_code=400)
        self.assertFalse(User.objects.filter(username="newcomer").exists())

    def test_an_address_making_too_many_attempts_is_told_to_wait(self) -> None:
        for _ in range(signup.SIGNUP.limit):
            self.client.post(SIGNUP, {**GOOD, "password2": "mismatch"})
        answer = self.client.post(SIGNUP, GOOD)
        self.assertContains(answer, "Too many sign-ups", status_code=429)
        self.assertIn("Retry-After", answer)
        self.assertFalse(User.objects.filter(username="newcomer").exists())


class SignInLandingTests(TestCase):
    def test_signing_in_without_next_lands_on_the_account_page(self) -> None:
        cache.clear()
        make_user("owner")
        answer = self.client.post(
            "/accounts/login/", {"username": "owner", "password": "pw-for-tests-only"}
        )
        self.assertRedirects(answer, "/account/", fetch_redirect_response=False)
