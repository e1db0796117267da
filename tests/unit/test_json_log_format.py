"""RELAY_LOG_FORMAT=json's formatter (tunnelsite/logconfig.py): one object per line, fields as
keys, and redaction that JSON escaping cannot undo."""

from __future__ import annotations

import json
import logging
import sys

from hypothesis import given
from hypothesis import strategies as st

from tunnels import tokens
from tunnelsite.logconfig import JsonFormatter

made_tokens = st.builds(lambda: tokens.join(tokens.new_prefix(), tokens.new_secret()))
# Text a path or a reason may carry around a token: quotes, backslashes, control and
# non-ASCII characters, which JSON escapes (\", \\, \n, \u00e9...).
around = st.text(alphabet=st.sampled_from('"\\\n\t\x00é€ /?=&a'), max_size=6)


def record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("relay.pool.registry", logging.INFO, __file__, 1, message, args, None)
    if exc:
        try:
            raise ValueError("bad thing")
        except ValueError:
            made.exc_info = sys.exc_info()
            made.levelno, made.levelname = logging.ERROR, "ERROR"
    made.__dict__.update(extra)
    return made


@given(token=made_tokens, before=around, after=around)
def test_a_token_in_a_field_or_the_message_is_redacted_before_escaping(token, before, after):
    text = f"{before}{token}{after}"
    line = JsonFormatter().format(record("opened %s", text, event="x", path=text))
    secret = token[11:]
    assert secret not in line
    parsed = json.loads(line)
    assert secret not in parsed["message"] and secret not in parsed["path"]
    assert f"{token[:11]}…" in parsed["path"]
    # and no escaped spelling of the secret either (its characters need none, but check)
    assert json.dumps(secret)[1:-1] not in line


def test_one_line_with_the_required_keys_the_event_and_its_fields():
    line = JsonFormatter().format(
        record("tunnel %s closed: %s", "a-name", "client gone", event="tunnel_closed",
               tunnel="a-name", owner=7, tunnels=["a", "b"], delivered=True)
    )  # fmt: skip
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "INFO" and parsed["logger"] == "relay.pool.registry"
    assert parsed["message"] == "tunnel a-name closed: client gone"
    assert parsed["time"].endswith("Z") and "T" in parsed["time"]
    assert parsed["event"] == "tunnel_closed" and parsed["owner"] == 7
    assert parsed["tunnels"] == ["a", "b"] and parsed["delivered"] is True


def test_a_traceback_is_one_string_and_makes_the_line_a_fault():
    parsed = json.loads(JsonFormatter().format(record("could not flush", exc=True)))
    assert parsed["event"] == "fault" and parsed["level"] == "ERROR"
    assert parsed["exc"].startswith("Traceback (most recent call last):")
    assert parsed["exc"].endswith("ValueError: bad thing")


def test_an_object_field_is_left_out_not_printed():
    """Django's request logging passes the request itself, whose text has the query string."""

    class Request:
        def __str__(self) -> str:
            return "<ASGIRequest: GET '/x?ticket=secret-ticket-value'>"

    line = JsonFormatter().format(record("Not Found: /x", request=Request(), status_code=404))
    assert "secret-ticket-value" not in line
    assert json.loads(line)["status_code"] == 404


def test_a_field_cannot_overwrite_the_lines_own_keys():
    parsed = json.loads(JsonFormatter().format(record("the real one", level="FAKE", time="x")))
    assert parsed["level"] == "INFO" and parsed["time"] != "x"
