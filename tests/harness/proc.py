"""What a relay process holds, read from /proc: descriptors, listening sockets, spooled bodies,
memory."""

from __future__ import annotations

import os
import socket


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


def listening(pid: int) -> set[tuple[str, int]]:
    """The addresses and ports the process's own sockets listen on (IPv4 and IPv6): which
    process answers a connection is not this, since another may listen on the same port
    number at another address."""
    inodes = {t[len("socket:[") : -1] for t in open_fds(pid) if t.startswith("socket:[")}
    out = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/{pid}/net/{table}") as rows:
            next(rows)  # the header
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A: LISTEN
                    continue
                address, port = local.split(":")
                # The kernel prints the address as 32-bit words in host (little-endian) order.
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                out.add((socket.inet_ntop(family, words), int(port, 16)))
    return out
