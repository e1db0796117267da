"""What lasts: one row per tunnel session (a registration and its life)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Tunnel(models.Model):
    subdomain = models.CharField(max_length=65, db_index=True)
    client_ip = models.GenericIPAddressField()
    port = models.PositiveIntegerField(help_text="The pool port the client connects to.")
    max_sockets = models.PositiveIntegerField()
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=100, blank=True)
    is_live = models.BooleanField(default=True, db_index=True)
    sockets = models.PositiveIntegerField(default=0, help_text="Pool sockets up now.")
    peak_sockets = models.PositiveIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    bytes_in = models.BigIntegerField(default=0, help_text="Bytes from visitors.")
    bytes_out = models.BigIntegerField(default=0, help_text="Bytes to visitors.")
    last_activity = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # One live tunnel per name: the database, not a check-then-insert, decides.
            models.UniqueConstraint(
                fields=["subdomain"], condition=Q(is_live=True), name="one_live_tunnel_per_name"
            )
        ]

    def __str__(self) -> str:
        return self.subdomain
