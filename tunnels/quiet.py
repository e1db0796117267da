"""Expected refusals, answered without a log line each.

Django logs a WARNING for every 4xx answer (django.utils.log.log_response), unless the
response is marked as logged already. Some refusals are the normal course of a protocol or
cheap for anyone to cause (lt's "not yet" every 5 s, the inspector asked by someone who
may not, a bad registration): a line per request would let any visitor fill the log, and
hide what matters in it. Those answers go through `unlogged`.
"""

from __future__ import annotations

from typing import TypeVar

from django.http import HttpResponse

Answer = TypeVar("Answer", bound=HttpResponse)


def unlogged(answer: Answer) -> Answer:
    """`answer`, marked so that Django's request logging skips it."""
    answer._has_been_logged = True  # type: ignore[attr-defined]
    return answer
