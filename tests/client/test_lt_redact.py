"""The one masking helper every line `lt` prints goes through (tunnelsite_client/redact.py)."""

from __future__ import annotations

import string
from urllib.parse import quote

from hypothesis import assume, given
from hypothesis import strategies as st

from tunnels import tokens as relay_side
from tunnelsite_client import redact as client_side
from tunnelsite_client.redact import MASK, redact, redact_url, secrets_of

TOKEN_BODY = string.ascii_letters + string.digits + "-_"
tokens = st.builds(
    lambda prefix, secret: f"lt_{prefix}{secret}",
    st.text(string.ascii_lowercase + string.digits, min_size=8, max_size=8),
    st.text(TOKEN_BODY, min_size=32, max_size=32),
)
# Words that can never form a secret's pattern: no "_", ":", "/" or "@".
plain = st.text(string.ascii_letters + string.digits + " .,;()-", max_size=40)
passwords = st.text(string.printable.strip(), min_size=1, max_size=30)


@given(token=tokens, before=plain, after=plain)
def test_a_token_is_masked_wherever_it_appears_but_its_public_prefix_stays(token, before, after):
    assume(token[11:] not in before + after)
    for text in (
        f"{before} http://{token}@relay.example:8080/?new {after}",
        f"{before} Authorization: Bearer {token} {after}",
        f"{before}{token}{after}",
    ):
        shown = redact(text, secrets_of(f"http://{token}@relay", token))
        assert token[11:] not in shown
    assert token[:11] in redact(f"{before} {token} {after}")


@given(user=st.text(string.ascii_letters, min_size=1, max_size=10), password=passwords)
def test_a_password_in_a_url_is_masked_as_typed_and_decoded(user, password):
    encoded = quote(password, safe="")
    host = f"https://{user}:{encoded}@relay.example"
    assume(password not in "the relay says: bad password")
    # A secret is masked wherever it appears, so a password (or user name) that is also a
    # word of the line ("http", "rela") masks that word too: over-masking is safe, and not
    # what this checks.
    assume(password not in "relay https:// @relay.example unreachable: connection refused")
    assume(user not in "relay https:// @relay.example unreachable: connection refused")
    shown = redact(f"relay {host} unreachable: connection refused", secrets_of(host, None))
    assert shown == f"relay https://{MASK}@relay.example unreachable: connection refused"
    if len(password) >= 4:  # shorter ones only inside a URL (see MIN_EXACT_SECRET)
        shown = redact(f"the relay says: bad password {password}", secrets_of(host, None))
        assert password not in shown
    assert redact_url(host) == f"https://{MASK}@relay.example"


@given(text=plain)
def test_text_without_secrets_is_left_alone(text):
    assert redact(text, {"lt_abcdefgh" + "x" * 32}) == text
    assert redact_url(f"http://relay.example:8080/{text.replace(' ', '')}").startswith(
        "http://relay.example:8080/"
    )


def test_a_secret_too_short_to_mask_everywhere_is_still_masked_in_its_url():
    assert redact("relay http://a:pw@host down; pw ok", secrets_of("http://a:pw@host", None)) == (
        f"relay http://{MASK}@host down; pw ok"
    )


def test_the_relay_masks_log_lines_with_the_same_patterns_as_lt():
    """One rule for what a secret looks like, written twice because `lt` imports nothing
    from the server (tunnels/tokens.py masks the relay's log lines)."""
    assert client_side._USERINFO.pattern == relay_side._USERINFO_IN_TEXT.pattern
    assert client_side._CREDENTIAL.pattern == relay_side._CREDENTIAL_IN_TEXT.pattern


def test_the_placeholder_in_the_relays_advice_is_not_masked():
    advice = "Pass it as `lt --host <scheme>://TOKEN@<relay>` or `Authorization: Bearer TOKEN`."
    assert redact(advice) == advice
    assert redact("https://TOKENX@relay and Bearer TOKENS") == "https://***@relay and Bearer ***"


def test_a_password_holding_an_at_sign_is_masked_whole_by_the_pattern_alone():
    """`user:pa@ss-SECRET@host` (an unencoded '@' in the password): the user-info runs to
    the last '@' before the host, so nothing of it is printed, by lt or in the relay's log,
    even where the exact secret is not known (a URL quoted in a relay's message)."""
    url = "http://user:pa@ss-SECRET@localhost:1/?new"
    for shown in (redact(f"cannot reach {url}: refused"), relay_side.redact(url)):
        assert "SECRET" not in shown and "pa@" not in shown, shown
        assert "***@localhost:1/?new" in shown, shown
