"""A token made by `createtoken` under another SECRET_KEY than the relay's: the relay says so
when it starts, and refuses the token saying why and what to do (not "check you copied it").

Real processes: `manage.py shell` and `manage.py createtoken` run without the relay's
SECRET_KEY (the development key, as when the production environment was not loaded), then a
relay with its own SECRET_KEY on the same database."""

from __future__ import annotations

import os
import shutil
import subprocess

from harness.http import Visitor
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import RELAY_COMMAND, RELAY_TEST_ENV

RELAY_KEY = "the-relays-own-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_token_created_under_another_secret_key_is_named_at_start_and_refused_as_such(
    relay_template_db, tmp_path
):
    db = tmp_path / "relay.sqlite3"
    shutil.copyfile(relay_template_db, db)
    without_key = {
        k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "SECRET_KEY_FILE")
    }
    without_key.update(RELAY_TEST_ENV, DATABASE_URL=f"sqlite:///{db}")
    _manage(
        without_key,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('ops')",
    )
    token = _manage(without_key, "createtoken", "ops").strip()
    assert token.startswith("lt_")

    group = ProcessGroup()
    try:
        relay = group.start(
            RELAY_COMMAND,
            {**without_key, "SECRET_KEY": RELAY_KEY, "PYTHONUNBUFFERED": "1"},
            "relay",
        )
        warning = relay.wait_for_line(r"(\d+) usable API token\(s\) were created under a different")
        assert warning.group(1) == "1"
        assert "createtoken must run with the relay's environment" in relay.output()
        port = int(relay.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))

        with Visitor(port, f"127.0.0.1:{port}") as visitor:
            answer = visitor.request("GET", "/?new", [("Authorization", f"Bearer {token}")])
        assert answer.status == 401, answer
        message = answer.json()["message"]
        assert "created under a different SECRET_KEY than this relay's" in message
        assert "copied all of it" not in message

        logged = relay.wait_for_line(r"refused API token (lt_\w+)\.\.\.: it was created under")
        assert token.startswith(logged.group(1))
        assert token not in relay.output()
    finally:
        group.stop_all()
