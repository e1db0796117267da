"""A plan's reserved-name limit under concurrent requests (tunnels/reservations.py): several
processes on one database file reserve a different name each for the same user at the same
moment, as the account page's POSTs on several nodes (or threads) would; the plan allows one,
and exactly one is kept."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.processes import PYTHON, ROOT

CONTENDERS = 6
_SETUP = """
from django.contrib.auth.models import User
from tunnels.models import Account, Plan
plan = Plan.objects.create(name="one-name", max_reserved_names=1)
Account.objects.create(user=User.objects.create_user("racer"), plan=plan)
"""
# Each contender: Django set up and the limits read, then it waits on its stdin for the go,
# so that the reservations themselves start together.
_CONTENDER = """
import sys
import django
django.setup()
from django.contrib.auth.models import User
from tunnels import reservations
from tunnels.plans import limits_for
user_id = User.objects.get(username="racer").pk
limits = limits_for(user_id)
print("ready", flush=True)
sys.stdin.readline()
try:
    reservations.reserve(user_id, sys.argv[1], limits)
    print("reserved")
except reservations.NotReserved as refusal:
    print("refused:", refusal)
"""


def test_two_at_once_cannot_both_take_the_plans_last_place(
    relay_template_db: Path, tmp_path: Path
) -> None:
    db = tmp_path / "race.sqlite3"
    shutil.copyfile(relay_template_db, db)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    env["DJANGO_SETTINGS_MODULE"] = "tunnelsite.settings"
    subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", _SETUP], cwd=ROOT, env=env, check=True, timeout=60
    )
    contenders = [
        subprocess.Popen(
            [PYTHON, "-c", _CONTENDER, f"race-name-{i}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(CONTENDERS)
    ]
    try:
        for contender in contenders:
            assert contender.stdout is not None and contender.stdin is not None
            line = contender.stdout.readline()  # blocks until it is ready (or has died)
            assert line == "ready\n", line + contender.stdout.read()
        for contender in contenders:
            contender.stdin.write("go\n")  # type: ignore[union-attr]
            contender.stdin.flush()  # type: ignore[union-attr]
        outcomes = [contender.communicate(timeout=60)[0].strip() for contender in contenders]
    finally:
        for contender in contenders:
            if contender.poll() is None:
                contender.kill()
                contender.wait(timeout=10)
    assert sorted(outcome.split(":")[0] for outcome in outcomes) == ["refused"] * (
        CONTENDERS - 1
    ) + ["reserved"], outcomes
    assert all("allows 1 reserved name" in o for o in outcomes if o.startswith("refused")), outcomes
    kept = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", _COUNT],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert kept.stdout.strip().splitlines()[-1] == "1"


_COUNT = "from tunnels.models import ReservedSubdomain; print(ReservedSubdomain.objects.count())"
