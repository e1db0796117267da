"""Fresh, migrated PostgreSQL databases for the test modules that run nodes (tests/cluster,
tests/quota, tests/tcp, harness/nodes.py): each is a copy of one template that `manage.py
migrate` builds once per test process (`CREATE DATABASE … TEMPLATE`: under a second, where
migrating each module's database took 10 to 30 s of the run). conftest.py drops the
template when the session ends.

PostgreSQL on 127.0.0.1:5432 is required (TUNNELSITE_TEST_PG, a libpq URL to the
maintenance database, overrides it): unreachable, the test fails.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import psycopg
import pytest

from harness.processes import PYTHON, ROOT
from harness.relay import RELAY_TEST_ENV

PG_URL = os.environ.get("TUNNELSITE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MIGRATE_TIMEOUT_S = 120.0  # migrate on a fresh PostgreSQL database, on a busy machine

_template: list[str] = []  # this process's migrated template, once made


def _urls(name: str) -> tuple[str, str]:
    """Django's DATABASE_URL and psycopg's URL for the database `name`."""
    base = PG_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgres://', 1)}/{name}", f"{base}/{name}"


def _execute(sql: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def _migrated_template() -> str:
    if not _template:
        name = f"tunnelsite_template_{uuid.uuid4().hex[:12]}"
        _execute(f'CREATE DATABASE "{name}"')
        env = {**os.environ, **RELAY_TEST_ENV, "DATABASE_URL": _urls(name)[0]}
        done = subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=MIGRATE_TIMEOUT_S,
        )
        if done.returncode != 0:
            _execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pytest.fail(f"manage.py migrate failed on PostgreSQL:\n{done.stdout}\n{done.stderr}")
        _template.append(name)
    return _template[0]


def fresh_database(prefix: str) -> tuple[str, str, str]:
    """A new migrated database named `prefix_<random>`: (name, DATABASE_URL, psycopg URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        _execute(f'CREATE DATABASE "{name}" TEMPLATE "{_migrated_template()}"')
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is required: {exc}")
    return (name, *_urls(name))


def drop_database(name: str) -> None:
    _execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_template() -> None:
    """The session's end: the template goes too (if this process made one)."""
    while _template:
        drop_database(_template.pop())
