"""A task that outlives the code that starts it is made by `relay.tasks.background`, in an
empty context: made with `loop.create_task` while a request is served, it kept that request's
asgiref executor, which ends with the request, and every later database call of the task
failed (issue 16's attack: the account-usage batches, started by the first registration,
never reached the database without Redis, so a crash forgot every account's use). Only the
runner's start and stop, which run outside any request, may call `create_task` themselves;
`ensure_future` stays for tasks a request awaits before it ends."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "relay/tasks.py": "the one place that makes them",
    "relay/run/runner.py": "the relay's start and stop: no request is being served there",
}


def test_long_lived_tasks_start_in_a_context_of_their_own() -> None:
    found = []
    for path in sorted((ROOT / "relay").rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if where in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "create_task"
            ):
                found.append(f"{where}:{node.lineno}")
    assert not found, f"use relay.tasks.background: {found}"


def test_the_check_sees_a_create_task() -> None:
    tree = ast.parse("asyncio.get_running_loop().create_task(job())")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert any(isinstance(c.func, ast.Attribute) and c.func.attr == "create_task" for c in calls)
