"""The TCP tunnel's frame codec (relay/pool/tcp_frames.py and its twin
tunnelsite_client/tcp_frames.py):
any frames, cut anywhere, read back the same by both; malformed headers are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay import protocol
from relay.pool import tcp_frames as relay_frames
from tunnelsite_client import limits as client_limits
from tunnelsite_client import tcp_frames as client_frames

CODECS = [relay_frames, client_frames]

_frames = st.lists(
    st.one_of(
        st.tuples(st.just(protocol.TCP_DATA), st.binary(min_size=1, max_size=3000)),
        st.tuples(st.just(protocol.TCP_EOF), st.just(b"")),
        st.tuples(st.just(protocol.TCP_OPEN), st.sampled_from([b"127.0.0.1 5555", b"::1 1"])),
        st.tuples(st.just(protocol.TCP_CLOSE), st.binary(max_size=protocol.TCP_MAX_REASON_BYTES)),
    ),
    max_size=20,
)


def _merge_data(frames: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """DATA pieces in a row joined: a reader may hand a frame's payload out in pieces."""
    out: list[tuple[bytes, bytes]] = []
    for kind, payload in frames:
        if kind == protocol.TCP_DATA and out and out[-1][0] == protocol.TCP_DATA:
            out[-1] = (kind, out[-1][1] + payload)
        else:
            out.append((kind, payload))
    return out


@given(frames=_frames, cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=12))
@pytest.mark.parametrize("writer", CODECS)
@pytest.mark.parametrize("reader", CODECS)
def test_any_frames_cut_anywhere_read_back(writer, reader, frames, cuts) -> None:
    wire = b"".join(
        b"".join(writer.data_frames(p)) if k == protocol.TCP_DATA else writer.frame(k, p)
        for k, p in frames
    )
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    r = reader.FrameReader()
    got: list[tuple[bytes, bytes]] = []
    for a, b in zip(points, points[1:], strict=False):
        got.extend(r.feed(wire[a:b]))
    assert r.between_frames
    assert _merge_data(got) == _merge_data(list(frames))


@pytest.mark.parametrize("codec", CODECS)
def test_large_data_is_split_into_bounded_frames(codec) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    parts = codec.data_frames(data)
    assert len(parts) == 2 * 4
    r = codec.FrameReader()
    pieces = [p for k, p in r.feed(b"".join(parts)) if k == protocol.TCP_DATA]
    assert b"".join(pieces) == data


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    "head",
    [
        b"X\x00\x00\x00\x01",  # unknown kind
        b"D\x00\x00\x00\x00",  # empty DATA
        b"O\x00\x00\x00\x00",  # empty OPEN
        b"E\x00\x00\x00\x01",  # EOF with a payload
        b"D" + (protocol.TCP_MAX_DATA_BYTES + 1).to_bytes(4, "big"),
        b"C" + (protocol.TCP_MAX_REASON_BYTES + 1).to_bytes(4, "big"),
        b"O" + (protocol.TCP_MAX_OPEN_BYTES + 1).to_bytes(4, "big"),
    ],
)
def test_malformed_headers_are_refused(codec, head) -> None:
    with pytest.raises(codec.FrameError):
        codec.FrameReader().feed(head)


def test_the_client_speaks_the_relays_frames() -> None:
    for name in (
        "TCP_OPEN",
        "TCP_DATA",
        "TCP_EOF",
        "TCP_CLOSE",
        "TCP_FRAME_HEADER_BYTES",
        "TCP_MAX_DATA_BYTES",
        "TCP_MAX_REASON_BYTES",
        "TCP_MAX_OPEN_BYTES",
        "TCP_SPARE_CONNECTIONS",
        "TCP_SPARE_IDLE_S",
    ):
        assert getattr(client_limits, name) == getattr(protocol, name), name


def test_reason_is_cut_without_splitting_a_character() -> None:
    for codec in CODECS:
        cut = codec.reason_payload("é" * 300)
        assert len(cut) <= protocol.TCP_MAX_REASON_BYTES
        cut.decode("utf-8")


@given(frames=_frames, most=st.integers(min_value=1, max_value=5))
@pytest.mark.parametrize("codec", CODECS)
def test_feeding_a_few_frames_at_a_time_reads_the_same(codec, frames, most) -> None:
    """feed_some(data, most): at most `most` events, and the bytes they took; the rest fed
    again later gives what one feed gives."""
    wire = b"".join(
        b"".join(codec.data_frames(p)) if k == protocol.TCP_DATA else codec.frame(k, p)
        for k, p in frames
    )
    whole = codec.FrameReader().feed(wire)
    r = codec.FrameReader()
    got: list[tuple[bytes, bytes]] = []
    rest = wire
    while rest:
        events, used = r.feed_some(rest, most)
        assert len(events) <= most and 0 < used <= len(rest)
        got.extend(events)
        rest = rest[used:]
    assert got == whole and r.between_frames
