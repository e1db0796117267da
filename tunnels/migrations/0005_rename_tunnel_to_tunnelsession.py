"""tunnels.Tunnel -> tunnels.TunnelSession: one row per session of a tunnel, and one class
called `Tunnel` on the server (relay's live tunnel). The table keeps its name
(tunnels_tunnel), so relays of the previous version keep working against the same database
during a rolling upgrade; the admin URL becomes /admin/tunnels/tunnelsession/. Django
renames the content type itself; the permissions keep their ids and follow the name here,
so operators granted "view tunnel" or "change tunnel" (the dashboard's disconnect button)
keep what they had."""

from __future__ import annotations

from typing import Any

from django.db import migrations

ACTIONS = ("add", "change", "delete", "view")


def _rename_permissions(apps: Any, old: str, new: str, label: str) -> None:
    permission = apps.get_model("auth", "Permission")
    for action in ACTIONS:
        permission.objects.filter(
            content_type__app_label="tunnels", codename=f"{action}_{old}"
        ).update(codename=f"{action}_{new}", name=f"Can {action} {label}")


def forwards(apps: Any, schema_editor: Any) -> None:
    _rename_permissions(apps, "tunnel", "tunnelsession", "tunnel session")


def backwards(apps: Any, schema_editor: Any) -> None:
    _rename_permissions(apps, "tunnelsession", "tunnel", "tunnel")


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("tunnels", "0004_token_key_fingerprint"),
    ]

    operations = [
        # Pin the table's name first, so the rename leaves the table as it is.
        migrations.AlterModelTable(name="tunnel", table="tunnels_tunnel"),
        migrations.RenameModel(old_name="Tunnel", new_name="TunnelSession"),
        migrations.RunPython(forwards, backwards),
    ]
