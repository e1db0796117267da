"""The relay's ear for operators: close tunnels when the admin (or a command) says so.

Listens on the channel layer group `relay-control` for
`{"type": "tunnel.close", "names": [...], "token_ids": [...], "user_ids": [...], "reason": "...",
"cooldown_s": N, "suspend": bool, "owners": {name: owner}}` (relay.face.close_message) and closes
matching live tunnels through the registry, leaving a Disconnect's cool-down or a suspension
in the registry's `sanctions` (relay/pool/sanctions.py); `tunnel.lift` (relay.face.lift_message)
lifts suspended names, tokens and users. Sent by tunnels/control.py. The in-memory layer
only carries messages within one process: fine, the admin is served by the runrelay process.
On a named node the group also carries `tunnel.owner` (a node opened or closed a name) and
`tunnel.release` (a client reclaims its name on another node), both from relay/cluster/node.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

from relay.pool.registry import Registry, get_registry
from relay.protocol import (
    CLOSE_REASON_MAX_CHARS,
    CONTROL_GROUP,
    REJOIN_S,
    RETRY_FIRST_S,
    RETRY_MAX_S,
)
from relay.tasks import background
from relay.visitor_pass import obey_signout

logger = logging.getLogger(__name__)


def handle(registry: Registry, message: dict[str, Any]) -> int:
    """Obey one control message; returns how many tunnels it closed."""
    if message.get("type") == "visitor.signout":  # a user signed out on the bare domain
        return visitor_signout(message)
    if message.get("type") == "tunnel.owner":  # scale-out: a node opened or closed a tunnel
        if registry.cluster is not None:
            registry.cluster.note_owner(message)
        return 0
    if message.get("type") == "tunnel.release":  # scale-out: its owner reclaims it elsewhere
        return registry.cluster.note_release(message) if registry.cluster is not None else 0
    if message.get("type") == "tunnel.lift":  # an operator lifted a suspension
        registry.sanctions.lift(
            _strings(message.get("names")),
            _list(message.get("token_ids")),
            _list(message.get("user_ids")),
        )
        return 0
    if message.get("type") != "tunnel.close":
        return 0
    return _close(registry, message)


def _strings(values: Any) -> list[str]:
    """The strings of a message's list (anything else in it, or a non-list, is no name)."""
    if not isinstance(values, list | tuple):
        return []
    return [value for value in values if isinstance(value, str)]


def _list(values: Any) -> list[Any]:
    """A message's list (its items are checked where they are used), or nothing."""
    return list(values) if isinstance(values, list | tuple) else []


def _close(registry: Registry, message: dict[str, Any]) -> int:
    """tunnel.close: close the tunnels with these names, tokens or users; after a Disconnect
    (`cooldown_s`) keep their names and owners from registering for that long; after a
    Suspend (`suspend`) keep the names suspended for visitors and registrations."""
    reason = str(message.get("reason") or "closed by the operator")[:CLOSE_REASON_MAX_CHARS]
    names = set(_strings(message.get("names")))
    token_ids = {i for i in _list(message.get("token_ids")) if type(i) is int}  # not bools
    user_ids = {i for i in _list(message.get("user_ids")) if type(i) is int}
    try:
        cooldown_s = float(message.get("cooldown_s") or 0.0)
    except (TypeError, ValueError):
        cooldown_s = 0.0
    if message.get("suspend"):  # before closing: a client's re-registration is refused
        registry.sanctions.suspend(names, reason, token_ids, user_ids)
    doomed = [
        tunnel
        for tunnel in list(registry.tunnels.values())
        if tunnel.name in names
        or (tunnel.token_id is not None and tunnel.token_id in token_ids)
        or (tunnel.user_id is not None and tunnel.user_id in user_ids)
    ]
    if cooldown_s > 0:
        # Every relay that hears it: the names, and the owners the admin read from the
        # session rows (another node's tunnel) or this relay holds.
        owners = message.get("owners")
        owners = owners if isinstance(owners, dict) else {}
        for name in names:
            owner = owners.get(name)
            registry.sanctions.cool_down(name, owner if isinstance(owner, str) else "", cooldown_s)
        for tunnel in doomed:
            registry.sanctions.cool_down(tunnel.name, tunnel.owner, cooldown_s)
    for tunnel in doomed:
        registry.close(tunnel, reason)
    return len(doomed)


def visitor_signout(message: dict[str, Any]) -> int:
    """End the passes into team-only tunnels the user was given before signing out
    (relay/visitor_pass.py); closes no tunnel."""
    if not obey_signout(message):
        logger.debug("a malformed visitor.signout message was ignored")
    return 0


async def listen(ready: asyncio.Event | None = None, retry_s: float = RETRY_FIRST_S) -> None:
    """Run until cancelled. `ready` is set once the relay has joined the group.

    One channel name for the whole process: messages sent to it while a receive failed wait
    in the layer (a minute on Redis) for the next receive. After a failure the channel joins
    the group again (Redis may have restarted and forgotten it) before receiving; a quiet
    channel stays in the group because `_rejoin` renews its membership. When the channel
    layer is unreachable (Redis down), tunnels carry on: this task logs a warning and tries
    again with a growing delay, up to RETRY_MAX_S; it never ends the relay.
    """
    layer = get_channel_layer()
    if layer is None:
        logger.warning("no channel layer: the admin cannot disconnect tunnels")
        return
    channel = await layer.new_channel("relay-control.")
    rejoin: asyncio.Task[None] | None = None
    delay = retry_s
    try:
        while True:
            try:
                await layer.group_add(CONTROL_GROUP, channel)
                if rejoin is None:
                    rejoin = background(_rejoin(layer, channel))
                if ready is not None:
                    ready.set()
                delay = retry_s
                await _receive_forever(layer, channel)
            except Exception as exc:  # CancelledError is a BaseException: it ends the loop
                logger.warning(
                    "channel layer unavailable (%s); the admin cannot disconnect tunnels until "
                    "it is back; retrying in %g s",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
    finally:
        if rejoin is not None:
            rejoin.cancel()
        try:
            await asyncio.shield(layer.group_discard(CONTROL_GROUP, channel))
        except Exception:
            pass


async def _receive_forever(layer: Any, channel: str) -> None:
    while True:
        message = await layer.receive(channel)
        try:
            closed = handle(get_registry(), message)
        except Exception:
            logger.exception("could not obey control message %r", message)
            continue
        if closed:
            logger.info("control: closed %d tunnel(s)", closed)


async def _rejoin(layer: Any, channel: str) -> None:
    """Renew the channel's membership before the layer's group expiry drops it."""
    while True:
        await asyncio.sleep(REJOIN_S)
        try:
            await layer.group_add(CONTROL_GROUP, channel)
        except Exception as exc:  # the receive loop sees the same outage and reports it
            logger.debug("could not renew the control group membership: %r", exc)
