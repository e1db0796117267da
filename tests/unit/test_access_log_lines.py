"""The access log's text line (relay/access_log.py): whatever path a visitor sends, decoded,
the line stays one line that a terminal shows as written."""

from __future__ import annotations

import logging
import re
import sys
import time
import tracemalloc
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from relay import access_log

# What a shipper or a terminal must never see in a line: anything str.splitlines() breaks
# on, ESC and the 8-bit CSI that start a terminal's escape sequences, the bidi controls.
LINE_BREAKS = {ch for ch in map(chr, range(sys.maxunicode + 1)) if len(f"a{ch}b".splitlines()) > 1}
NEVER = (
    LINE_BREAKS | {"\x1b", "\x9b"} | set(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def logged(path: str) -> tuple[str, str]:
    """The text line and the JSON field `path` of one access line for `path`."""
    handler = Lines()
    logger = logging.getLogger("relay.access")
    logger.addHandler(handler)
    try:
        access_log.line("http", "a-name", "GET", path, 200, 0, 0, time.monotonic(), "127.0.0.1")
    finally:
        logger.removeHandler(handler)
    (record,) = handler.records
    return handler.format(record), record.__dict__["path"]


# Paths around the characters that matter, and any text at all.
dangerous = st.sampled_from(sorted(NEVER) + ["/", "%", "é", "€", "\U0001f600", "a"])
paths = st.one_of(st.text(), st.text(alphabet=dangerous))


@given(path=paths)
def test_a_text_access_line_is_one_line_with_no_escape_sequence_or_bidi_control(path):
    text, field = logged(path)
    assert len(text.splitlines()) == 1, text
    assert not NEVER & set(text), text
    assert not NEVER & set(field), field


def test_nel_the_line_separators_and_the_8_bit_csi_are_their_utf_8_percent_escapes():
    assert (
        logged("/a\x85b\u2028c\u2029d\x9b31m\u202ee")[1]
        == "/a%C2%85b%E2%80%A8c%E2%80%A9d%C2%9B31m%E2%80%AEe"
    )
    assert logged("/\n\x1b[2J\x7f")[1] == "/%0A%1B[2J%7F"
    assert logged("/café/€")[1] == "/café/€"  # the rest of Unicode is written as it is


def test_the_escaped_set_is_every_control_and_separator_unicode_has():
    categories = {
        code
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in ("Cc", "Zl", "Zp")
    }
    assert categories <= set(access_log._UNSAFE)
    assert {ord(ch) for ch in LINE_BREAKS} <= set(access_log._UNSAFE)


def test_a_websocket_text_message_is_measured_without_a_copy():
    text = "a" * 4_000_000
    tracemalloc.start()
    try:
        assert access_log._size({"type": "websocket.receive", "text": text}) == len(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert access_log._size({"text": "é€\U0001f600"}) == len("é€\U0001f600".encode())
    assert access_log._size({"bytes": b"abc"}) == 3


# The text line as a combined-format reader splits it: visitor, tunnel, "method path",
# status (or a TCP connection's end), bytes in and out, duration.
TEXT_LINE = re.compile(r'(\S+) (\S+) "(\S+) ([^"]*)" (\S+) (\d+) (\d+) (\d+\.\d)ms')


def unescape(field: str) -> str:
    """The text line's `\\xHH` escapes read back (UTF-8 bytes)."""
    return re.sub(
        rb"\\x([0-9A-F]{2})", lambda m: bytes([int(m[1], 16)]), field.encode("utf-8")
    ).decode("utf-8")


@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "TCP"]), st.text(min_size=1)),
    path=paths,
    visitor=st.one_of(st.just(""), st.text()),
    tunnel=st.text(min_size=1),
    end=st.one_of(st.just(""), st.text()),
    numbers=st.tuples(*[st.integers(0, 10**12)] * 3),
)
def test_a_text_access_line_splits_back_into_exactly_the_fields_logged(
    method, path, visitor, tunnel, end, numbers
):
    """Nothing in a field (a `"` in the path once closed the quoted request early and forged
    the status, the byte counts and the duration after it) moves the fields a reader finds."""
    status, bytes_in, bytes_out = numbers
    handler = Lines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("relay.access")
    logger.addHandler(handler)
    try:
        args = (tunnel, method, path, status, bytes_in, bytes_out, time.monotonic(), visitor, end)
        access_log.line("http", *args)
    finally:
        logger.removeHandler(handler)
    (record,) = handler.records
    match = TEXT_LINE.fullmatch(handler.format(record))
    assert match is not None, handler.format(record)
    fields = record.__dict__
    assert [unescape(f) for f in match.groups()] == [
        visitor or "-",
        tunnel,
        method,
        fields["path"] or "-",
        end or str(status),
        str(bytes_in),
        str(bytes_out),
        f"{fields['duration_ms']:.1f}",
    ]


def test_a_quote_in_the_path_cannot_forge_the_status():
    text, _ = logged('/x" 200 99999 99999 0.1ms "10.9.9.9')
    assert '"GET /x\\x22 200 99999 99999 0.1ms \\x2210.9.9.9" 200 0 0 ' in text
