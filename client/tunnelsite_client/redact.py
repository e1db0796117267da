"""Keep secrets out of everything `lt` prints: tokens, passwords, URL user-info.

Every line `lt` writes (the display, the library's log, error messages) goes through
`redact`, which masks what it recognises (a `user:pass@` in a URL, an `lt_` token, an
`Authorization` credential) and, exactly, the secrets this run was given (`secrets_of`),
whatever their format. A token keeps its public prefix (`lt_abcd1234…`), as the admin
shows it, so a user can still tell which token a message is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from .limits import MIN_EXACT_SECRET

MASK = "***"

# scheme://user:pass@host -> scheme://***@host: up to the LAST '@' before the host (a
# password may hold an unencoded '@'; user-info never holds / ? # or spaces).
# The placeholder TOKEN (in the relay's how-to messages) is left alone, here and in
# Authorization examples. tunnels/tokens.py masks log lines with the same patterns (a test
# checks they stay equal; the client imports nothing from the server).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(?!TOKEN@)[^/?#\s]+@")
# A tunnelsite token: `lt_`, an 8-character public prefix, then the secret.
_TOKEN = re.compile(r"\blt_([a-z0-9]{8})[A-Za-z0-9_-]+")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+(?!TOKEN\b)[A-Za-z0-9._~+/=-]+")


def secrets_of(host: str | None, token: str | None) -> set[str]:
    """The secrets a run was given: the token and the relay URL's user name and password
    (as typed and percent-decoded)."""
    found: set[str] = set()
    if token:
        found.add(token)
    if host:
        try:
            parts = urlsplit(host)
            user, password = parts.username, parts.password
        except ValueError:
            user = password = None
        for value in (user, password):
            if value:
                found.update({value, unquote(value)})
    return found


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret masked."""
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _TOKEN.sub(r"lt_\1…", text)
    text = _CREDENTIAL.sub(rf"\1 {MASK}", text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= MIN_EXACT_SECRET:
            text = text.replace(secret, MASK)
    return text


def redact_url(url: str) -> str:
    """A URL fit to print: its user-info (where a token or password may sit) masked."""
    return redact(url)
