"""What the session's secret scan reads and looks for (harness/log_capture.py): every relay's
and client's output, known by its command line whatever a test named it, and the secrets
each was started with."""

from __future__ import annotations

from django.conf import settings
from harness import log_capture
from harness.processes import PYTHON
from harness.relay import NPM_LT, RELAY_COMMAND

RELAY, CLIENT, OTHER = log_capture.RELAY, log_capture.CLIENT, log_capture.OTHER
OUR_LT = [PYTHON, "-m", "tunnelsite_client.cli", "--port", "3000"]


def test_relays_and_clients_are_known_by_their_command_not_their_name():
    assert log_capture.command_kind([*RELAY_COMMAND, "--node-name", "alpha"]) == RELAY
    assert log_capture.command_kind(["ip", "netns", "exec", "r", *RELAY_COMMAND]) == RELAY
    assert log_capture.command_kind(["bash", "-c", ".venv/bin/python manage.py runrelay"]) == RELAY
    assert log_capture.command_kind(OUR_LT) == CLIENT
    assert log_capture.command_kind([*OUR_LT[:3], "tcp", "--port", "5432"]) == CLIENT
    assert log_capture.command_kind([str(NPM_LT), "--port", "3000"]) == CLIENT
    assert log_capture.command_kind(["bash", "-c", ".venv/bin/lt tcp --port 22"]) == CLIENT
    assert log_capture.command_kind([PYTHON, "-u", "tests/apps/local_app.py"]) == OTHER
    assert log_capture.command_kind([PYTHON, "manage.py", "createtoken", "ann"]) == OTHER


def test_the_secrets_a_process_is_started_with_are_remembered_in_every_spelling():
    token, password, db, redis, key = (f"{what}-0123456789abcdef" for what in "tpdrk")
    found, pairs = log_capture.secrets_given(
        [*OUR_LT, f"--token={token}", "--host", f"https://lt_{token}@relay.example"],
        {
            "LT_BASIC_AUTH": f"ann:{password}\nbob",
            "DATABASE_URL": f"postgres://tunnelsite:{db}@127.0.0.1/tunnelsite",
            "REDIS_URL": f"redis://:{redis}@127.0.0.1:6379/0",
            "SECRET_KEY": key,
        },
    )
    assert {token, f"lt_{token}", db, redis, key} <= set(found)
    assert pairs == [("ann", password)]


def test_the_public_development_key_is_no_secret():
    found, _ = log_capture.secrets_given(OUR_LT, {"SECRET_KEY": settings.DEVELOPMENT_SECRET_KEY})
    assert not found
