"""No hand-rolled poll loops: a loop that sleeps lives in harness/waiting.py, and nowhere else.

A loop whose body sleeps is a poll (or a retry) written again, with its own deadline
arithmetic and its own way of failing; `wait_until`, `wait_until_async` and `poll` are the one
way tests wait. The few loops that sleep for another reason (the passage of time is what a
test is about, or a sender is paced on purpose) are listed below with that reason.

"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
NOT_SCANNED = {".npm", "node_modules"}
WAITING = Path("harness/waiting.py")

# (file under tests/, the function holding the loop): why its sleep is not a poll.
ALLOWED: dict[tuple[str, str], str] = {
    (
        "sockets/test_serve_cancel.py",
        "_cancelled_after",
    ): "yields a counted number of turns (sleep(0)) to land a cancel on each await in turn",
    (
        "hardening/test_limits.py",
        "test_a_keep_alive_connection_may_idle_past_the_header_timeout_then_is_closed_when_idle",
    ): "the passage of time is under test: the connection idles past the header deadline",
    (
        "hardening/test_limits.py",
        "test_a_slow_upload_is_bounded_by_the_idle_timeout_not_the_header_deadline",
    ): "paces a slow sender on purpose: 10 bytes over 1.5 s",
    (
        "hardening/test_limits.py",
        "test_the_idle_timeout_counts_from_the_last_answer_never_during_one",
    ): "the passage of time is under test: requests a third of the idle timeout apart",
    (
        "hardening/test_limits.py",
        "test_a_visitor_reading_50_mib_slowly_costs_the_relay_only_a_few_mib",
    ): "paces a slow reader on purpose: about 1 KB/s",
    (
        "e2e/test_control_listener.py",
        "test_every_control_message_sent_over_minutes_of_idling_is_obeyed",
    ): "the random gaps between control messages are the schedule under test",
    (
        "apps/local_app.py",
        "handle_request",
    ): "/dribble paces its answer on purpose: the slow app a replay's deadline is tested on",
}


@dataclass(frozen=True)
class SleepingLoop:
    path: str
    function: str
    line: int


def _is_sleep(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "sleep"


def sleeping_loops(source: str, path: str) -> list[SleepingLoop]:
    """Every `for`/`while` loop in `source` whose body calls something named `sleep`."""
    found: list[SleepingLoop] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
                continue
            if isinstance(child, ast.For | ast.AsyncFor | ast.While):
                body = [*child.body, *child.orelse]
                if any(_is_sleep(n) for stmt in body for n in ast.walk(stmt)):
                    found.append(SleepingLoop(path, function, child.lineno))
            visit(child, function)

    visit(ast.parse(source), "<module>")
    return found


def scanned_files() -> list[Path]:
    return sorted(
        path
        for path in TESTS.rglob("*.py")
        if not NOT_SCANNED & set(path.relative_to(TESTS).parts)
        and path.relative_to(TESTS) != WAITING
    )


def all_sleeping_loops() -> list[SleepingLoop]:
    loops: list[SleepingLoop] = []
    for path in scanned_files():
        loops += sleeping_loops(path.read_text(), path.relative_to(TESTS).as_posix())
    return loops


def test_no_loop_sleeps_outside_the_waiting_helper() -> None:
    hand_rolled = [
        f"{loop.path}:{loop.line} in {loop.function}"
        for loop in all_sleeping_loops()
        if (loop.path, loop.function) not in ALLOWED
    ]
    assert not hand_rolled, (
        "a loop that sleeps is a hand-rolled poll: use harness.waiting.wait_until "
        f"(or wait_until_async), or add it to ALLOWED with the reason: {hand_rolled}"
    )


def test_every_allowed_loop_still_exists() -> None:
    present = {(loop.path, loop.function) for loop in all_sleeping_loops()}
    assert not set(ALLOWED) - present, "stale ALLOWED entries"


def test_the_scan_sees_the_tests_it_guards() -> None:
    scanned = {path.relative_to(TESTS).as_posix() for path in scanned_files()}
    assert {
        "harness/http.py",
        "hardening/test_limits.py",
        "sockets/test_pool.py",
        "client/test_lt_process.py",
        "docs/test_fences.py",
    } <= scanned
    assert WAITING.as_posix() not in scanned


def test_it_finds_sync_and_async_poll_loops_and_ignores_loops_that_do_not_sleep() -> None:
    source = """
import asyncio, time
from time import sleep

def waits():
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.01)

async def waits_async():
    for _ in range(100):
        if ready():
            break
        await asyncio.sleep(0.01)

def retries():
    while True:
        try:
            return call()
        except OSError:
            sleep(1)

def reads():
    for chunk in stream:
        use(chunk)
    time.sleep(1)  # after the loop: not a poll
"""
    found = sleeping_loops(source, "example.py")
    assert [(loop.function, loop.line) for loop in found] == [
        ("waits", 7),
        ("waits_async", 13),
        ("retries", 19),
    ]
