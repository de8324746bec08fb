"""Docker's multiplexed stream frames: encoding, and decoding from chunks split anywhere."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ketch.common.errors import InvalidArgument
from ketch.spec.stdcopy import STDERR, STDIN, STDOUT, SYSTEMERR, Decoder, Frame, encode


def test_encode_header_layout() -> None:
    assert encode(STDOUT, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert encode(STDERR, b"e" * 300) == b"\x02\x00\x00\x00\x00\x00\x01\x2c" + b"e" * 300
    assert encode(STDIN, b"") == b"\x00\x00\x00\x00\x00\x00\x00\x00"
    assert encode(SYSTEMERR, b"boom")[:8] == b"\x03\x00\x00\x00\x00\x00\x00\x04"


def test_encode_splits_long_payloads() -> None:
    data = encode(STDOUT, b"abcdefg", max_payload=3)
    assert data == b"\x01\0\0\0\0\0\0\x03abc" + b"\x01\0\0\0\0\0\0\x03def" + b"\x01\0\0\0\0\0\0\x01g"
    assert Decoder().feed(data) == [Frame(1, b"abc"), Frame(1, b"def"), Frame(1, b"g")]


@pytest.mark.parametrize("stream", [-1, 4, 255])
def test_encode_rejects_unknown_streams(stream: int) -> None:
    with pytest.raises(InvalidArgument, match=f"unknown stream {stream}"):
        encode(stream, b"x")


def test_encode_rejects_bad_max_payload() -> None:
    with pytest.raises(InvalidArgument, match="max_payload"):
        encode(STDOUT, b"x", max_payload=0)


def test_decode_the_frames_of_a_recorded_exec() -> None:
    # `docker exec kv20-d sh -c 'echo out; echo err >&2; exit 3'`: what dockerd sent (docker-api-traces 16-exec)
    wire = encode(STDOUT, b"out\n") + encode(STDERR, b"err\n")
    decoder = Decoder()
    assert decoder.feed(wire) == [Frame(STDOUT, b"out\n"), Frame(STDERR, b"err\n")]
    assert decoder.pending == 0
    decoder.close()


def test_decode_one_byte_at_a_time() -> None:
    wire = encode(STDOUT, b"hello") + encode(STDERR, b"") + encode(STDOUT, b"world" * 100)
    decoder = Decoder()
    frames: list[Frame] = []
    for i in range(len(wire)):
        frames += decoder.feed(wire[i : i + 1])
        assert decoder.pending <= 8 + 500
    assert frames == [Frame(STDOUT, b"hello"), Frame(STDERR, b""), Frame(STDOUT, b"world" * 100)]
    decoder.close()


def test_decode_split_inside_the_header_and_the_payload() -> None:
    wire = encode(STDOUT, b"0123456789")
    for cut in range(1, len(wire)):
        decoder = Decoder()
        assert decoder.feed(wire[:cut]) == []
        assert decoder.pending == cut
        assert decoder.feed(wire[cut:]) == [Frame(STDOUT, b"0123456789")]


frame_lists = st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=300)), max_size=12)


@given(frame_lists, st.lists(st.integers(0, 4000), max_size=20))
def test_decode_any_chunking(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    wire = b"".join(encode(stream, payload) for stream, payload in frames)
    bounds = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    decoder = Decoder()
    decoded: list[Frame] = []
    for start, end in itertools.pairwise(bounds):
        decoded += decoder.feed(wire[start:end])
    assert decoded == [Frame(s, p) for s, p in frames]
    decoder.close()


def test_unknown_stream_in_header() -> None:
    with pytest.raises(InvalidArgument, match="unknown stream 7"):
        Decoder().feed(b"\x07\0\0\0\0\0\0\x01x")


def test_truncated_stream() -> None:
    decoder = Decoder()
    decoder.feed(encode(STDOUT, b"whole") + b"\x02\0\0")
    with pytest.raises(InvalidArgument, match=r"inside a header \(3 bytes left over\)"):
        decoder.close()
    decoder = Decoder()
    decoder.feed(encode(STDERR, b"cut short")[:-2])
    with pytest.raises(InvalidArgument, match="inside a stderr frame"):
        decoder.close()
