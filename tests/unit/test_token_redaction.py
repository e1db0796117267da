"""No token, password or URL user-info reaches a relay log line (tunnels.tokens.redact)."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from tunnels import tokens

made_tokens = st.builds(lambda: tokens.join(tokens.new_prefix(), tokens.new_secret()))


@given(token=made_tokens, path=st.sampled_from(["/t/{}/?new", "/{}", "/api/tunnels/{}/status"]))
def test_a_token_in_a_path_keeps_only_its_public_prefix(token, path):
    shown = tokens.redact(f"Not Found: {path.format(token)}")
    assert token[11:] not in shown
    assert f"{token[:11]}…" in shown


def test_user_info_and_credentials_are_masked():
    assert tokens.redact("GET http://alice:hunter22@relay/ Authorization: Basic YWxp") == (
        "GET http://***@relay/ Authorization: Basic ***"
    )


def test_every_log_record_is_masked_whichever_handler_prints_it(caplog):
    token = tokens.join(tokens.new_prefix(), tokens.new_secret())
    with caplog.at_level(logging.WARNING, logger="django.request"):
        logging.getLogger("django.request").warning("Not Found: %s", f"/t/{token}/")
        try:
            raise ValueError(f"bad token {token}")
        except ValueError:
            logging.getLogger("relay").exception("while registering")
    assert token[11:] not in caplog.text
    assert token[:11] in caplog.text
