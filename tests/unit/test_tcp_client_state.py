"""`lt tcp`'s conversation rules, sans-IO (tunnelsite_client/tcp_state.py): which relay frames a
pool
connection may carry next, and when a conversation is over."""

from __future__ import annotations

import pytest

from tunnelsite_client.limits import TCP_CLOSE, TCP_DATA, TCP_EOF, TCP_OPEN
from tunnelsite_client.tcp_frames import FrameError
from tunnelsite_client.tcp_state import Step, TcpState


def opened() -> TcpState:
    state = TcpState()
    assert state.relay_frame(TCP_OPEN) is Step.OPEN
    return state


def test_a_conversation_is_over_after_eof_both_ways_in_either_order() -> None:
    relay_first = opened()
    assert relay_first.relay_frame(TCP_DATA) is Step.DATA
    assert relay_first.relay_frame(TCP_EOF) is Step.EOF
    assert relay_first.app_ended() is Step.DONE
    assert relay_first.idle
    app_first = opened()
    assert app_first.app_ended() is Step.EOF
    assert app_first.relay_frame(TCP_DATA) is Step.DATA  # the visitor still writes
    assert app_first.relay_frame(TCP_EOF) is Step.DONE
    assert app_first.idle


def test_the_next_open_starts_a_new_conversation_on_the_same_connection() -> None:
    state = opened()
    state.relay_frame(TCP_EOF)
    state.app_ended()
    assert state.relay_frame(TCP_OPEN) is Step.OPEN
    assert (state.relay_eof, state.app_eof) == (False, False)


def test_a_close_ends_the_conversation_at_any_point() -> None:
    state = opened()
    state.relay_frame(TCP_EOF)
    assert state.relay_frame(TCP_CLOSE) is Step.CLOSE
    assert state.idle


@pytest.mark.parametrize("kind", [TCP_DATA, TCP_EOF, TCP_CLOSE])
def test_any_frame_but_open_before_a_conversation_is_a_protocol_error(kind: bytes) -> None:
    with pytest.raises(FrameError, match="before OPEN"):
        TcpState().relay_frame(kind)


def test_an_open_in_the_middle_of_a_conversation_is_a_protocol_error() -> None:
    with pytest.raises(FrameError, match="OPEN in the middle"):
        opened().relay_frame(TCP_OPEN)


@pytest.mark.parametrize("kind", [TCP_DATA, TCP_EOF])
def test_data_or_a_second_eof_after_the_relays_eof_is_a_protocol_error(kind: bytes) -> None:
    state = opened()
    state.relay_frame(TCP_EOF)
    with pytest.raises(FrameError, match="after the relay's EOF"):
        state.relay_frame(kind)


def test_the_apps_eof_twice_is_a_bug_not_a_frame() -> None:
    state = opened()
    state.app_ended()
    with pytest.raises(RuntimeError):
        state.app_ended()
