"""Helpers for the data-path tests: what a relay process holds, read from /proc."""

from __future__ import annotations

import os

import pytest


def open_fds(pid: int) -> list[str]:
    """Where each of the process's descriptors points (readlink of /proc/<pid>/fd/*)."""
    out = []
    folder = f"/proc/{pid}/fd"
    for fd in os.listdir(folder):
        try:
            out.append(os.readlink(f"{folder}/{fd}"))
        except FileNotFoundError:  # closed while we looked
            continue
    return out


def deleted_files(pid: int) -> int:
    """Open files already unlinked: Twisted's spooled request bodies."""
    return sum(1 for target in open_fds(pid) if target.endswith("(deleted)"))


@pytest.fixture(name="open_fds")
def open_fds_fixture():
    return open_fds


@pytest.fixture(name="deleted_files")
def deleted_files_fixture():
    return deleted_files
