"""relay/pool/sanctions.py and the control messages that fill it (relay/cluster/control.py),
fed values: cool-downs expire and are bounded, refusals say why and for how long, suspended
names come and go, and malformed messages change nothing and raise nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay import face, protocol
from relay.cluster.control import handle
from relay.pool.registry import Registry
from relay.pool.sanctions import Sanctions
from relay.pool.tunnel import Tunnel

NAME, OWNER = "my-app", "user:7"


def test_a_cooldown_refuses_the_name_and_the_owner_until_it_ends() -> None:
    sanctions = Sanctions()
    sanctions.cool_down(NAME, OWNER, 60, now=1000.0)
    by_name = sanctions.refusal(NAME, "ip:10.0.0.1", now=1000.5)
    assert by_name is not None
    assert (by_name.status, by_name.reason, by_name.retry_after) == (
        403,
        protocol.REFUSAL_DISCONNECTED,
        60,
    )
    assert by_name.message == (
        "my-app was closed by the relay's operator; it can be registered again in 60 s."
    )
    by_owner = sanctions.refusal("other-name", OWNER, now=1030.0)
    assert by_owner is not None and by_owner.retry_after == 30
    assert by_owner.message == (  # says why another name waits: which one was closed
        "other-name cannot be registered for another 30 s: the relay's operator closed your "
        "tunnel my-app, and your new tunnels wait as long."
    )
    fresh = sanctions.refusal(None, OWNER, now=1059.9)  # ?new too
    assert fresh is not None and fresh.message.startswith("No new tunnel can be registered")
    assert sanctions.refusal("other-name", "user:8", now=1001.0) is None
    assert sanctions.refusal(NAME, OWNER, now=1060.0) is None
    assert not sanctions.cooling, "an ended cool-down is forgotten"


def test_no_cooldown_for_zero_seconds_or_without_an_owner() -> None:
    sanctions = Sanctions()
    sanctions.cool_down(NAME, OWNER, 0, now=1.0)
    assert not sanctions.cooling
    sanctions.cool_down(NAME, "", 10, now=1.0)
    assert list(sanctions.cooling) == [NAME]
    assert sanctions.refusal(None, "", now=2.0) is None


def test_cooldowns_are_bounded_dropping_the_soonest_to_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "COOLDOWNS_REMEMBERED", 10)
    sanctions = Sanctions()
    for i in range(20):
        sanctions.cool_down(f"name-{i:04d}", f"ip:10.0.0.{i}", 60, now=float(i))
    assert len(sanctions.cooling) == 10
    assert sanctions.refusal("name-0019", "", now=20.0) is not None
    assert sanctions.refusal("name-0000", "", now=20.0) is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["aaaa", "bbbb", "cccc", "dddd"]),
            st.sampled_from(["", "user:1", "ip:10.0.0.1"]),
            st.floats(min_value=0.0, max_value=120.0),
            st.floats(min_value=0.0, max_value=10.0),
        ),
        max_size=40,
    )
)
def test_every_refusal_waits_between_1_s_and_the_cooldown(steps: list[Any]) -> None:
    sanctions = Sanctions()
    now = 0.0
    for name, owner, seconds, later in steps:
        sanctions.cool_down(name, owner, seconds, now=now)
        now += later
        for key in ("aaaa", "bbbb", "cccc", "dddd"):
            refusal = sanctions.refusal(key, "", now=now)
            if refusal is not None:
                assert refusal.retry_after is not None
                assert 1 <= refusal.retry_after <= 120
        assert len(sanctions.cooling) <= 4 + 2


def test_a_suspended_name_is_refused_with_the_reason_and_held_from_random_names() -> None:
    sanctions = Sanctions()
    sanctions.suspend([NAME], "spam")
    refusal = sanctions.refusal(NAME, "", now=0.0)
    assert refusal is not None
    assert (refusal.status, refusal.reason, refusal.retry_after) == (
        protocol.SUSPENDED_STATUS,
        protocol.REFUSAL_SUSPENDED,
        None,
    )
    assert refusal.message == "The tunnel name my-app is suspended by the relay's operator: spam"
    assert sanctions.holds(NAME) and not sanctions.holds("free-name")
    sanctions.lift([NAME, "never-suspended"])
    assert sanctions.refusal(NAME, "", now=0.0) is None
    sanctions.replace({"aaaa": "one", "bbbb": "two"})
    assert sanctions.suspended == {"aaaa": "one", "bbbb": "two"}


def test_suspended_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "SUSPENDED_NAMES_REMEMBERED", 3)
    sanctions = Sanctions()
    sanctions.replace({f"name-{i}": "r" for i in range(5)})
    assert len(sanctions.suspended) == 3
    sanctions.suspend(["name-0"], "new reason")  # one already kept is updated
    assert sanctions.suspension("name-0") == "new reason"


# --- the control messages -----------------------------------------------------------------
def test_a_disconnect_message_cools_down_names_and_owners_this_relay_does_not_hold() -> None:
    registry = Registry()
    message = face.close_message(
        ["my-app"], [], "disconnected", cooldown_s=30, owners={"my-app": "ip:10.0.0.9"}
    )
    assert handle(registry, message) == 0
    assert registry.sanctions.refusal("my-app", "", None) is not None
    refusal = face_refusal(registry, "another-app", "ip:10.0.0.9")
    assert refusal is not None and refusal.reason == protocol.REFUSAL_DISCONNECTED


def face_refusal(registry: Registry, name: str, owner: str) -> Any:
    return registry.sanctions.refusal(name, owner)


def test_suspend_and_lift_messages_fill_and_empty_the_suspended_names() -> None:
    registry = Registry()
    handle(registry, face.close_message(["my-app"], [], "spam", suspend=True))
    assert registry.sanctions.suspension("my-app") == "spam"
    handle(registry, face.close_message(["my-app"], [], "just closed"))  # not a suspension
    assert registry.sanctions.suspension("my-app") == "spam"
    handle(registry, face.lift_message(["my-app"]))
    assert registry.sanctions.suspension("my-app") is None


@pytest.mark.parametrize(
    "message",
    [
        {"type": "tunnel.close", "names": ["my-app"], "cooldown_s": "soon", "owners": []},
        {"type": "tunnel.close", "names": [3, None], "cooldown_s": 5, "owners": {"x": 4}},
        {"type": "tunnel.close", "names": "my-app", "suspend": True, "reason": None},
        {"type": "tunnel.lift", "names": None},
        {"type": "tunnel.lift", "names": [1, {"a": 1}]},
        {"type": "tunnel.close", "token_ids": "123", "user_ids": [None, 1.5], "suspend": True},
        {"type": "tunnel.close", "token_ids": {"a": 1}, "user_ids": [True], "suspend": True},
        {"type": "tunnel.lift", "token_ids": "abc", "user_ids": [None, 1.5]},
    ],
)
def test_malformed_messages_change_nothing_they_cannot_read(message: dict[str, Any]) -> None:
    registry = Registry()
    handle(registry, message)  # no exception
    assert registry.sanctions.cooling == {}
    assert registry.sanctions.suspended == {}
    assert registry.sanctions.tokens == registry.sanctions.users == {}


def test_a_bool_is_no_user_id_in_a_close_message() -> None:
    registry = Registry()
    tunnel = Tunnel(
        name="my-app",
        owner="user:1",
        client_ip="127.0.0.1",
        max_conn_count=1,
        registry=registry,
        user_id=1,
        token_id=1,
        client_id="",
    )
    registry.tunnels["my-app"] = tunnel
    message = {"type": "tunnel.close", "user_ids": [True], "token_ids": [True], "suspend": True}
    assert handle(registry, message) == 0
    assert registry.get("my-app") is tunnel and not tunnel.closed
    del registry.tunnels["my-app"]
    tunnel.close("test over")
