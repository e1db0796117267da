"""The admin's static files are read from STATIC_ROOT under a shared lock on the folder, the
one runrelay takes exclusively while it collects into it (relay/management/commands/
runrelay.py): a relay starting while another collects read half-written folders and stopped
with a FileNotFoundError (seen when `make bench` started relays beside a production relay)."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from django.http import HttpResponse

from tunnelsite.static import StaticFilesMiddleware

MANIFEST = "whitenoise.storage.CompressedManifestStaticFilesStorage"


def test_static_root_is_read_only_once_no_collect_holds_it(settings, tmp_path: Path) -> None:
    root = tmp_path / "staticfiles"
    (root / "admin").mkdir(parents=True)
    (root / "admin" / "site.css").write_text("body{}")
    settings.STATIC_ROOT = str(root)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    made: list[StaticFilesMiddleware] = []

    def start() -> None:
        made.append(StaticFilesMiddleware(lambda request: HttpResponse()))

    collecting = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(collecting, fcntl.LOCK_EX)  # as runrelay's collect_static holds it
        reader = threading.Thread(target=start, daemon=True)
        reader.start()
        reader.join(timeout=0.5)  # a negative check: it must still be waiting for the lock
        assert reader.is_alive() and not made
    finally:
        os.close(collecting)  # the collect is done
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert any(url.endswith("admin/site.css") for url in made[0].files)
