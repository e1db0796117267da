from __future__ import annotations

from django.apps import AppConfig


class TunnelsConfig(AppConfig):
    name = "tunnels"
    verbose_name = "Tunnels"

    def ready(self) -> None:
        # Imported here, not at the top: the ORM code needs the app registry ready.
        from relay import face
        from tunnels import deactivation, signin  # noqa: F401  (signin connects a receiver)
        from tunnels.records import OrmRecords

        face.install_records(OrmRecords())
        deactivation.connect()
