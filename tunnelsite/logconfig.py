"""Logging setup (settings.LOGGING_CONFIG): the LOGGING dict, and no secret in any line.

Every log record's message (and traceback) is passed through `tunnels.tokens.redact` when
the record is made, so a token in a request path (`Not Found: /t/lt_...`), an exception or
a message never reaches a log line, whichever handler prints it.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from tunnels.tokens import redact

_installed = False


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
        clean = redact(message)
        if clean != message:
            rec.msg, rec.args = clean, None
        if rec.exc_info and rec.exc_info[0] is not None:
            rec.exc_text = redact(formatter.formatException(rec.exc_info))
        return rec

    return record
