"""RELAY_LOG_FORMAT=json's formatter (tunnelsite/logconfig.py): one object per line, fields as
keys, and redaction that JSON escaping cannot undo."""

from __future__ import annotations

import json
import logging
import sys

from hypothesis import given
from hypothesis import strategies as st

from tunnels import tokens
from tunnelsite import logconfig
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


# --- what a line costs: the redaction's four patterns run only where a secret could be -------
FOUR = ("_TOKEN_IN_TEXT", "_GLUED_TOKEN", "_USERINFO_IN_TEXT", "_CREDENTIAL_IN_TEXT")


def four_patterns(text: str) -> str:
    """tunnels.tokens.redact without its first scan: the four substitutions, always."""
    text = tokens._TOKEN_IN_TEXT.sub(rf"{tokens.TOKEN_MARK}\1…", text)
    text = tokens._GLUED_TOKEN.sub(rf"{tokens.TOKEN_MARK}\1…", text)
    text = tokens._USERINFO_IN_TEXT.sub(r"\1***@", text)
    return tokens._CREDENTIAL_IN_TEXT.sub(r"\1 ***", text)


# Text around the characters the patterns turn on, in both cases, with Unicode's case folds
# (the long s and the Kelvin sign fold to s and k).
pieces = st.sampled_from(
    ["lt_", "_", "@", "://", "basic ", "BEARER\t", "Baſic ", "a", "Z", "0", " ", "/", "é", "K"]
)
texts = st.one_of(
    st.text(), st.lists(st.one_of(pieces, made_tokens, st.text(max_size=3))).map("".join)
)


@given(text=texts)
def test_redact_skips_the_four_patterns_only_where_none_could_match(text):
    assert tokens.redact(text) == four_patterns(text)


class Counting:
    def __init__(self, pattern, calls):
        self.pattern, self.calls = pattern, calls

    def sub(self, *args):
        self.calls.append(self.pattern.pattern)
        return self.pattern.sub(*args)


def access_line_as_json(monkeypatch, path: str) -> tuple[dict, int]:
    """One access line made by the relay's record factory and printed as JSON: the parsed
    line, and how many times the redaction's patterns ran over text."""
    calls: list[str] = []
    for name in FOUR:
        monkeypatch.setattr(tokens, name, Counting(getattr(tokens, name), calls))
    make = logconfig._redacting(logging.LogRecord)
    fields = {"event": "access", "kind": "http", "tunnel": "jolly-emu-9a45", "method": "GET",
              "path": path, "status": 200, "bytes_in": 0, "bytes_out": 94,
              "duration_ms": 1.3, "visitor": "127.0.0.1"}  # fmt: skip
    made = make("relay.access", logging.INFO, __file__, 1, '%s %s "%s %s" %s',
                ("127.0.0.1", "jolly-emu-9a45", "GET", path, 200), None)  # fmt: skip
    made.__dict__.update(fields)
    return json.loads(JsonFormatter().format(made)), len(calls)


def test_an_access_line_without_a_secret_runs_no_redaction_pattern(monkeypatch):
    line, scans = access_line_as_json(monkeypatch, "/sha256/of-this")
    assert line["path"] == "/sha256/of-this" and line["tunnel"] == "jolly-emu-9a45"
    assert scans == 0  # was 4 for the message when made, 4 again, and 4 per text field


def test_an_access_line_with_a_token_in_its_path_is_redacted_once_per_text(monkeypatch):
    token = tokens.join(tokens.new_prefix(), tokens.new_secret())
    line, scans = access_line_as_json(monkeypatch, f"/t/{token}")
    assert token not in json.dumps(line) and line["path"] == f"/t/{token[:11]}…"
    assert scans == 2 * len(FOUR)  # the message when made, and the path field
