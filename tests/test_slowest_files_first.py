"""The run starts with its slowest files (harness/schedule.py, sorted by conftest.py): a
file renamed or removed would silently fall back to the end of the run, where one slow file
bounds it."""

from __future__ import annotations

from harness.processes import ROOT
from harness.schedule import SLOWEST_FILES, sort_keys

TESTS = ROOT / "tests"


def test_every_file_named_slowest_exists() -> None:
    missing = [path for path in SLOWEST_FILES if not (TESTS / path).is_file()]
    assert not missing, f"SLOWEST_FILES names files that are gone: {missing}"


def test_slow_files_come_first_then_e2e_and_each_files_tests_stay_together() -> None:
    second, slowest = sorted(SLOWEST_FILES, key=SLOWEST_FILES.__getitem__)[-2:]
    # As pytest-django leaves them: a file's TestCases first, its other tests later.
    collected = [
        ("unit/test_a.py", "unit"),
        ("views/test_b.py", "django"),
        ("e2e/test_c.py", "e2e"),
        (second, "e2e"),
        ("views/test_b.py", "django"),
        (slowest, "e2e"),
        ("e2e/test_d.py", "e2e"),
        ("unit/test_a.py", "unit"),
    ]
    keys = sort_keys(collected)
    assert [path for path, _ in sorted(collected, key=lambda file: keys[file[0]])] == [
        slowest,
        second,
        "e2e/test_c.py",
        "e2e/test_d.py",
        "views/test_b.py",
        "views/test_b.py",
        "unit/test_a.py",
        "unit/test_a.py",
    ]
