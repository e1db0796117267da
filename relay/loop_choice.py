"""Imported first by `runrelay`: picks the event loop before Daphne creates one."""

from __future__ import annotations

from relay.loop import install

LOOP_NAME = install()
