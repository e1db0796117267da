"""Imported first by `runrelay`: picks the event loop before Daphne creates one."""

from __future__ import annotations

from relay.run import reactor
from relay.run.console import reserve_standard_fds
from relay.run.loop import install

# Before the loop opens its first descriptor: with stdout closed it would become fd 1.
reserve_standard_fds()
LOOP_NAME = install()
reactor.install()  # on that loop; Daphne keeps it (relay/run/reactor.py)
