"""Every byte the test session's processes print, in files, and the secrets they were given.

`harness.processes.Process` writes each child's merged stdout and stderr, byte for byte, to
a file of its own under `directory()` (one directory per pytest process: the conftest sets
it at session start), as it reads it. The harness remembers the secrets it handed out or
saw: API tokens it issued (`remember`), and those a process was started with (`lt --token`,
`LT_TOKEN`, `--basic-auth user:password`, `RELAY_METRICS_TOKEN`); tests add what they see
(a registration answer's pool secret, a visitor's ticket).

`leaks(...)` then searches files for each secret and the forms a log line could carry it in:
as is, URL-encoded, JSON-escaped, base64 (alone, and a basic-auth `user:password` pair as
an Authorization header carries it). tests/logs checks its own scenarios with it, and the
session-end check in tests/conftest.py every relay's and client's output of the session.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Shorter values are not remembered: a test's "pw" or "secret" also occurs in honest text
# ("pool secret"), and the checks are about real credentials, which are long.
MIN_SECRET_CHARS = 8
# The processes whose output must hold no secret: the relays and the tunnel clients (the
# local apps echo what they are sent, on purpose).
CHECKED_NAMES = ("relay", "lt", "our lt", "lt tcp")

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


def log_file(name: str, pid: int) -> Path | None:
    """A new file for one child's output, or None when no session directory is set."""
    global _counter
    if _directory is None:
        return None
    with _lock:
        _counter += 1
        number = _counter
    safe = "".join(ch if ch.isalnum() else "-" for ch in name) or "process"
    return _directory / f"{number:05d}-{safe}-{pid}.log"


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
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--token":
            remember(value, "a token given to lt --token")
        elif flag == "--basic-auth" and ":" in value:
            user, _, password = value.partition(":")
            remember_basic(user, password)
    for key in ("LT_TOKEN", "RELAY_METRICS_TOKEN"):
        value = (env or {}).get(key, "")
        if value:
            remember(value, f"{key} of a process")


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
    names = {"".join(ch if ch.isalnum() else "-" for ch in n) for n in CHECKED_NAMES}
    return sorted(
        p for p in where.glob("*.log") if p.stem.split("-", 1)[1].rsplit("-", 1)[0] in names
    )
