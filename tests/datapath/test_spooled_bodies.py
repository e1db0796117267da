"""Item 25: a spooled request body is closed when its request ends, not at the next
garbage collection (the relay once held a gigabyte of deleted temporary files)."""

from __future__ import annotations

import hashlib
import os

from harness.proc import deleted_files
from harness.waiting import wait_until

UPLOADS = 12
SIZE = 4 * 1024 * 1024  # well above Twisted's 100 KB in-memory threshold


def test_uploads_leave_no_open_temporary_files(relay, local_app, lt_factory):
    client = lt_factory(relay, local_app.port)
    pid = relay.process.pid
    body = os.urandom(SIZE)
    digest = hashlib.sha256(body).hexdigest()

    for _ in range(UPLOADS):
        answer = relay.request("POST", "/sha256", name=client.name, body=body)
        assert answer.status == 200
        assert answer.json()["sha256"] == digest

    wait_until(lambda: deleted_files(pid) == 0, 2, "the relay to close every spooled body")
