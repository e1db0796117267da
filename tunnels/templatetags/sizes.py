"""`{% load sizes %}` then `{{ n|binary_size }}`: tunnels/sizes.binary in templates."""

from __future__ import annotations

from django import template

from tunnels.sizes import binary

register = template.Library()
register.filter("binary_size", binary)
