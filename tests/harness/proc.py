"""What a relay process holds, read from /proc: descriptors, spooled bodies, memory."""

from __future__ import annotations

import os


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


def rss_kib(pid: int) -> int:
    """The process's resident memory, in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")
