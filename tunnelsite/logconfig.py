"""Logging setup (settings.LOGGING_CONFIG): the LOGGING dict, and no secret in any line.

Every log record's message (and traceback) is passed through `tunnels.tokens.redact` when
the record is made, so a token in a request path (`Not Found: /t/lt_...`), an exception or
a message never reaches a log line, whichever handler prints it. The record then holds the
redacted text as its message (no arguments left to format again) and is marked so
(`REDACTED`): the JSON formatter does not redact it a second time, as it must a record made
some other way (`logging.makeLogRecord`).

`RELAY_LOG_FORMAT=json` prints each record as one JSON object per line (`JsonFormatter`):
`time`, `level`, `logger`, `message`, the record's `event` and its fields (given with
`extra=`), and `exc` for a traceback. Fields are redacted like the message, before they are
serialised: JSON escaping comes after, so it cannot split a secret out of redact's reach
(docs/logs.md); `event` and `kind`, which the relay names itself, and numbers need none.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from tunnels.tokens import redact

_installed = False

# A LogRecord's own attributes: everything else on a record came from `extra=` (a field).
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# The keys the JSON line sets itself: a field of the same name would overwrite one.
_OWN_KEYS = ("time", "level", "logger", "message", "exc")
# The record attribute that says its message and traceback were redacted when it was made.
REDACTED = "_redacted"
# Text fields whose values the relay names itself (relay/log_events.py), never a visitor's or
# a client's text: written without redaction. Anything else is redacted (a tunnel's name in
# the access log is the label of the Host a visitor sent; a method is the visitor's too).
_OWN_TEXT_FIELDS = frozenset({"event", "kind"})


def configure(config: dict[str, Any]) -> None:
    global _installed
    if not _installed:
        _installed = True
        logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))
    logging.config.dictConfig(config)


def _redacting(make: Any) -> Any:
    formatter = logging.Formatter()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec: logging.LogRecord = make(*args, **kwargs)
        try:
            message = rec.getMessage()
        except Exception:  # bad arguments: logging reports that itself, later
            return rec
        rec.msg, rec.args = redact(message), None  # formatted once, for every handler
        if rec.exc_info and rec.exc_info[0] is not None:
            rec.exc_text = redact(formatter.formatException(rec.exc_info))
        rec.__dict__[REDACTED] = True
        return rec

    return record


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call gave with `extra=`, each value redacted if it is text."""
    fields: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _RECORD_ATTRIBUTES or key.startswith("_"):
            continue
        clean = value if key in _OWN_TEXT_FIELDS else _clean(value)
        if clean is not _LEFT_OUT:
            fields[key] = clean
    return fields


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return _LEFT_OUT


# What stands for a field that is neither text, a number nor a list: Django's request
# logging passes the HttpRequest itself, whose text carries the query string (a secret's
# usual place); our events pass plain values only.
_LEFT_OUT = "(left out)"


# The event of a line that carries a traceback and names no event of its own.
FAULT = "fault"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (RELAY_LOG_FORMAT=json); see the module doc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        redacted = record.__dict__.get(REDACTED, False)  # by the record factory
        if not redacted:
            line["message"] = redact(line["message"])
        for key, value in fields_of(record).items():
            if key not in _OWN_KEYS:
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text if redacted else redact(record.exc_text)
            line.setdefault("event", FAULT)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=True, separators=(", ", ": "), default=str)
