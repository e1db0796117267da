"""One relay per database (or per node name on a shared database), held for the process's life.

At start a relay marks the sessions it finds live as closed (`store.close_stale_sessions`):
those of every relay without a node name, or only its own node's. A second relay on the
same database with the same node name (or without one) would close the first one's live
sessions, so it is refused. Cluster nodes with different names share a database: each
holds its name exclusively and the database shared; a relay without a name holds the
database exclusively (it closes every session it finds).

SQLite: `flock` on lock files next to the database file. PostgreSQL: advisory locks on a
connection kept open for the process's life. The operating system (or PostgreSQL, when the
connection ends) releases them when the process dies, however it dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

from relay.face import DatabaseInUse

HOW_TO_RUN_SEVERAL = (
    "several relays on one database must each have their own RELAY_NODE_NAME (docs/cluster.md)"
)


def lock_database(node_name: str) -> list[Any]:
    """Take the locks for a relay called `node_name` ("" without a name): the handles to keep
    referenced for the process's life, or DatabaseInUse."""
    database = connections["default"]
    if database.vendor == "sqlite":
        return _lock_sqlite(str(settings.DATABASES["default"]["NAME"]), node_name)
    if database.vendor == "postgresql":
        return _lock_postgresql(node_name)
    return []


def _flock(path: Path, exclusive: bool) -> int | None:
    """The open descriptor holding the lock, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if exclusive:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return "another relay"
    return f"another relay (pid {pid})" if pid.isdigit() else "another relay"


def _lock_sqlite(name: str, node_name: str) -> list[Any]:
    if not name or name == ":memory:" or name.startswith("file:"):
        return []  # a database of this process only
    path = Path(name).resolve()
    whole = path.with_name(path.name + ".relay.lock")
    if not node_name:
        fd = _flock(whole, exclusive=True)
        if fd is None:
            raise DatabaseInUse(
                f"{_holder(whole)} is already running on the SQLite database {path}: "
                f"stop it first ({HOW_TO_RUN_SEVERAL})"
            )
        return [fd]
    shared = _flock(whole, exclusive=False)
    if shared is None:
        raise DatabaseInUse(
            f"{_holder(whole)} without a node name is running on the SQLite database {path} "
            f"and would close this node's sessions: stop it first ({HOW_TO_RUN_SEVERAL})"
        )
    mine = path.with_name(f"{path.name}.relay-{node_name}.lock")
    fd = _flock(mine, exclusive=True)
    if fd is None:
        os.close(shared)
        raise DatabaseInUse(
            f"{_holder(mine)} is already running as node {node_name} on the SQLite "
            f"database {path}: stop it first, or give this one another RELAY_NODE_NAME"
        )
    return [shared, fd]


def _key(text: str) -> int:
    """A signed 64-bit advisory-lock key for `text`."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _lock_postgresql(node_name: str) -> list[Any]:
    # Its own connection, never closed by Django's request cycle: the locks live with it.
    held = connections.create_connection("default")
    held.ensure_connection()
    whole, mine = _key("tunnelsite relay"), _key(f"tunnelsite relay node {node_name}")
    with held.cursor() as cursor:
        if not node_name:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [whole])
            if not cursor.fetchone()[0]:
                held.close()
                raise DatabaseInUse(
                    "another relay is already running on this PostgreSQL database: "
                    f"stop it first ({HOW_TO_RUN_SEVERAL})"
                )
            return [held]
        cursor.execute("SELECT pg_try_advisory_lock_shared(%s)", [whole])
        if not cursor.fetchone()[0]:
            held.close()
            raise DatabaseInUse(
                "a relay without a node name is running on this PostgreSQL database and "
                f"would close this node's sessions: stop it first ({HOW_TO_RUN_SEVERAL})"
            )
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [mine])
        if not cursor.fetchone()[0]:
            held.close()
            raise DatabaseInUse(
                f"another relay is already running as node {node_name} on this PostgreSQL "
                "database: stop it first, or give this one another RELAY_NODE_NAME"
            )
    return [held]
