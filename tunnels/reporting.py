"""Django's error reports (the technical 500 page with DEBUG, the mails to ADMINS) without the
relay's own secrets: Django hides request headers whose META key matches
API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE; our lt's visitor rules header
(protocol.ACCESS_HEADER, with basic-auth passwords) matches none of these, so it is named
here. Set as DEFAULT_EXCEPTION_REPORTER_FILTER (tunnelsite/settings.py)."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter

from relay import protocol


def meta_key(header: str) -> str:
    """The request.META key Django gives an HTTP header."""
    return "HTTP_" + header.upper().replace("-", "_")


# The relay's headers that carry secrets (the pool secret also matches Django's SECRET).
SECRET_HEADERS = (protocol.ACCESS_HEADER, protocol.POOL_SECRET_HEADER)


class ReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern
        + "|"
        + "|".join(re.escape(meta_key(header)) for header in SECRET_HEADERS),
        flags=re.IGNORECASE,
    )
