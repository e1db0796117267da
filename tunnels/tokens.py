"""API token format and hashing. Tokens are never stored in clear.

A token reads `lt_<prefix><secret>`: an 8-character lookup prefix (stored, indexed, shown in
the admin) and a 32-character secret. The database keeps only HMAC-SHA256(SECRET_KEY, secret),
so a leaked database does not leak usable tokens; rotating SECRET_KEY invalidates every token.
Each token also records `key_fingerprint()`, a short HMAC of a constant under the key that made
it (never the key): a token made under another key (createtoken run without the relay's
environment) is then refused as such, not as mistyped, and the relay counts them at start.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

from django.conf import settings

TOKEN_MARK = "lt_"
PREFIX_LENGTH = 8
# 24 random bytes -> 32 url-safe characters: 192 bits, well past guessing.
SECRET_BYTES = 24
SECRET_LENGTH = 32
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
TOKEN_LENGTH = len(TOKEN_MARK) + PREFIX_LENGTH + SECRET_LENGTH
# What a token made here looks like after `lt_`: the prefix alphabet, then url-safe base64.
_TOKEN_BODY = re.compile(
    rf"[{re.escape(_PREFIX_ALPHABET)}]{{{PREFIX_LENGTH}}}[A-Za-z0-9_-]{{{SECRET_LENGTH}}}"
)


# What may carry a secret in a log line: a token (its public prefix is kept), URL user-info,
# an Authorization credential. See redact().
_TOKEN_IN_TEXT = re.compile(
    rf"\b{TOKEN_MARK}([{_PREFIX_ALPHABET}]{{{PREFIX_LENGTH}}})[A-Za-z0-9_-]+"
)
# A whole token glued to the text before it ("alt_...", "élt_...", "x_lt_..."): no word
# boundary there, and it is a usable token still; its full length keeps honest words out.
_GLUED_TOKEN = re.compile(
    rf"{TOKEN_MARK}([{_PREFIX_ALPHABET}]{{{PREFIX_LENGTH}}})[A-Za-z0-9_-]{{{SECRET_LENGTH},}}"
)
_USERINFO_IN_TEXT = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(?!TOKEN@)[^/?#\s]+@")
_CREDENTIAL_IN_TEXT = re.compile(r"(?i)\b(bearer|basic)\s+(?!TOKEN\b)[A-Za-z0-9._~+/=-]+")
# Each pattern above needs one of these to match: the `_` of TOKEN_MARK, the `@` of
# user-info, an Authorization scheme's word (the same case-folding). Text without any, most
# log lines and fields, is returned after this one scan instead of four substitutions
# (tests/unit/test_json_log_format.py checks redact() against the four).
_COULD_HOLD_SECRET = re.compile(r"[_@]|(?i:bearer|basic)")


def redact(text: str) -> str:
    """`text` fit for a log: tokens cut to their public prefix (`lt_abcd1234…`, as the
    admin shows them), URL user-info and Authorization credentials masked."""
    if _COULD_HOLD_SECRET.search(text) is None:
        return text
    text = _TOKEN_IN_TEXT.sub(rf"{TOKEN_MARK}\1…", text)
    text = _GLUED_TOKEN.sub(rf"{TOKEN_MARK}\1…", text)
    text = _USERINFO_IN_TEXT.sub(r"\1***@", text)
    return _CREDENTIAL_IN_TEXT.sub(r"\1 ***", text)


def new_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


# Hex characters of the key fingerprint: enough that two keys practically never share one,
# too few to confirm a guessed key with any confidence.
KEY_FINGERPRINT_LENGTH = 8


def key_fingerprint() -> str:
    """Names the SECRET_KEY in use without revealing it: an HMAC of a constant, cut short."""
    key = settings.SECRET_KEY.encode()
    mac = hmac.new(key, b"tunnelsite.api-token-key", hashlib.sha256)
    return mac.hexdigest()[:KEY_FINGERPRINT_LENGTH]


def digest(secret: str) -> str:
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def join(prefix: str, secret: str) -> str:
    return f"{TOKEN_MARK}{prefix}{secret}"


def split(token: str) -> tuple[str, str] | None:
    """`lt_<prefix><secret>` -> (prefix, secret); None when it cannot be one of ours."""
    token = token.strip()
    if len(token) != TOKEN_LENGTH or not token.startswith(TOKEN_MARK):
        return None
    body = token[len(TOKEN_MARK) :]
    if not _TOKEN_BODY.fullmatch(body):
        return None  # e.g. a NUL byte, which PostgreSQL would refuse with an error
    return body[:PREFIX_LENGTH], body[PREFIX_LENGTH:]


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
