"""Every byte the test session's processes print, in files, and the secrets they were given.

`harness.processes.Process` writes each child's merged stdout and stderr, byte for byte, to
a file of its own under `directory()` (one directory per pytest process: the conftest sets
it at session start), as it reads it. The file's name says what the child is, decided by
its command line, not by the name a test gave it (`command_kind`): `relay` for a relay
command (`manage.py runrelay`, whatever the node, also in a `bash -c` line or under
`ip netns exec`), `client` for a tunnel client (our lt, `-m tunnelsite_client.cli` or an
`lt` executable; the npm `lt`), `other` for anything else (the local apps echo what they are
sent, on purpose). `checked_files` is the relays' and clients' files.

The harness remembers the secrets it handed out or saw: API tokens it issued (`remember`),
and those a process was started with (`remember_from`: `--token` and `--token=`,
`--basic-auth` and `LT_BASIC_AUTH`, `LT_TOKEN`, `RELAY_METRICS_TOKEN`, a `SECRET_KEY` other
than the public development key, `DJANGO_SUPERUSER_PASSWORD`, and the password of any URL in
the arguments or the environment, `DATABASE_URL` and `REDIS_URL` among them, with its user
name when that is a token); tests add what they see (a fake client's or the relay double's
pool secret, a visitor's ticket).

`leaks(...)` then searches files for each secret and the forms a log line could carry it in:
as is, URL-encoded, JSON-escaped, base64 (alone, and a basic-auth `user:password` pair as
an Authorization header carries it). tests/logs checks its own scenarios with it, and the
session-end check in tests/conftest.py every relay's and client's output of the session.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Shorter values are not remembered: a test's "pw" or "secret" also occurs in honest text
# ("pool secret"), and the checks are about real credentials, which are long.
MIN_SECRET_CHARS = 8
# What a child is, from its command line (`command_kind`): the relays' and the tunnel
# clients' output must hold no secret (the local apps echo what they are sent, on purpose).
RELAY, CLIENT, OTHER = "relay", "client", "other"
CHECKED_KINDS = (RELAY, CLIENT)
RELAY_COMMANDS = frozenset({"runrelay", "benchrelay"})
CLIENT_MODULE = "tunnelsite_client.cli"
CLIENT_EXECUTABLE = "lt"  # ours (.venv/bin/lt) and the npm client's (node_modules/.bin/lt)
# Environment variables that hold a secret as a whole.
SECRET_ENV = ("LT_TOKEN", "RELAY_METRICS_TOKEN", "DJANGO_SUPERUSER_PASSWORD")

_lock = threading.Lock()
_directory: Path | None = None
_secrets: dict[str, str] = {}  # secret -> what it is, for the failure message
_pairs: set[tuple[str, str]] = set()  # basic-auth (user, password)
_counter = 0


def start(directory: Path) -> None:
    """Where this pytest process's children write their output from now on."""
    global _directory
    directory.mkdir(parents=True, exist_ok=True)
    _directory = directory


def directory() -> Path | None:
    return _directory


def command_kind(args: Sequence[str]) -> str:
    """RELAY, CLIENT or OTHER, from a child's command line (its words, and those of a
    `bash -c` line)."""
    words = [word for arg in args for word in arg.split()]
    if RELAY_COMMANDS.intersection(words):
        return RELAY
    if CLIENT_MODULE in words or any(os.path.basename(w) == CLIENT_EXECUTABLE for w in words):
        return CLIENT
    return OTHER


def log_file(name: str, pid: int, kind: str = OTHER) -> Path | None:
    """A new file for one child's output, or None when no session directory is set."""
    global _counter
    if _directory is None:
        return None
    with _lock:
        _counter += 1
        number = _counter
    safe = "".join(ch if ch.isalnum() else "-" for ch in name) or "process"
    return _directory / f"{number:05d}-{kind}-{safe}-{pid}.log"


def remember(secret: str, what: str) -> None:
    """A secret the test session used: no relay or client may print it."""
    if len(secret) >= MIN_SECRET_CHARS:
        with _lock:
            _secrets.setdefault(secret, what)


def remember_basic(user: str, password: str) -> None:
    remember(password, f"the basic-auth password of {user!r}")
    if len(password) >= MIN_SECRET_CHARS:
        with _lock:
            _pairs.add((user, password))


def remember_from(args: Sequence[str], env: dict[str, str] | None) -> None:
    """The secrets a process is started with: its flags and environment."""
    found, pairs = secrets_given(args, env)
    for secret, what in found.items():
        remember(secret, what)
    for user, password in pairs:
        remember_basic(user, password)


def secrets_given(
    args: Sequence[str], env: dict[str, str] | None
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The secrets in a command line and its environment, and its basic-auth pairs."""
    env = env or {}
    found: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    flags = [*zip(args, args[1:], strict=False)]
    for arg in args:
        if arg.startswith("--") and "=" in arg:  # --token=lt_...
            flag, _, value = arg.partition("=")
            flags.append((flag, value))
    for flag, value in flags:
        if flag == "--token":
            found[value] = "a token given to lt --token"
        elif flag == "--basic-auth" and ":" in value:
            user, _, password = value.partition(":")
            pairs.append((user, password))
    for line in env.get("LT_BASIC_AUTH", "").splitlines():
        user, colon, password = line.strip().partition(":")
        if colon:
            pairs.append((user, password))
    for key in SECRET_ENV:
        if env.get(key):
            found[env[key]] = f"{key} of a process"
    key = env.get("SECRET_KEY", "")
    if key and key != _development_key():
        found[key] = "the SECRET_KEY of a process"
    for where, value in [*(("an argument", arg) for arg in args), *env.items()]:
        if "://" in value and "@" in value:
            _url_secrets(value, where, found)
    return found, pairs


def _url_secrets(value: str, where: str, found: dict[str, str]) -> None:
    try:
        url = urllib.parse.urlsplit(value.strip())
        user, password = url.username, url.password
    except ValueError:
        return
    if password:
        found.setdefault(urllib.parse.unquote(password), f"the URL password of {where}")
    if user and user.startswith("lt_"):  # the npm client's token, as user-info
        found.setdefault(urllib.parse.unquote(user), f"a token in a URL of {where}")


def _development_key() -> str:
    from django.conf import settings  # the test session's settings: tunnelsite.settings

    return str(settings.DEVELOPMENT_SECRET_KEY)


def secrets() -> dict[str, str]:
    with _lock:
        return dict(_secrets)


def forms(secret: str) -> set[str]:
    """The ways a log line could carry `secret`."""
    raw = secret.encode()
    found = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    return {form for form in found if len(form) >= MIN_SECRET_CHARS}


@dataclass(frozen=True)
class Leak:
    file: Path
    what: str
    form: str

    def __str__(self) -> str:
        return f"{self.file.name}: {self.what} (as {self.form!r})"


def leaks(files: Iterable[Path], known: dict[str, str] | None = None) -> list[Leak]:
    """Every secret (`known`, else every one remembered) found in `files`, in any form."""
    known = secrets() if known is None else known
    with _lock:
        pairs = set(_pairs)
    needles: dict[bytes, tuple[str, str]] = {}
    for secret, what in known.items():
        for form in forms(secret):
            needles[form.encode()] = (what, form)
    for user, password in pairs:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        needles[pair.encode()] = (f"the basic-auth pair of {user!r}", pair)
    found = []
    for path in files:
        data = path.read_bytes()
        for needle, (what, form) in needles.items():
            if needle in data:
                found.append(Leak(path, what, form))
    return found


def checked_files(where: Path | None = None) -> list[Path]:
    """The output files of the relays and clients (not the apps) under `where`."""
    where = where or _directory
    if where is None or not where.exists():
        return []
    return sorted(p for p in where.glob("*.log") if p.stem.split("-")[1] in CHECKED_KINDS)
