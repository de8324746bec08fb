"""Docker's multiplexed stream: stdout and stderr (and stdin, and daemon errors) on one byte stream.

Attach, exec and logs of a container without a tty send *frames*::

    [stream u8, 0, 0, 0, length u32 big-endian] + payload

``stream`` is 0 stdin, 1 stdout, 2 stderr or 3 systemerr (an error from the daemon itself: the payload is its
message and the stream ends). A tty container's stream is raw bytes instead, with no frames at all.

Pure code, no I/O: :func:`encode` builds frames, :class:`Decoder` takes bytes in whatever chunks the
transport delivers and returns each frame once it is whole.
"""

from __future__ import annotations

from typing import NamedTuple

from ketch.common.errors import InvalidArgument

__all__ = [
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "STDERR",
    "STDIN",
    "STDOUT",
    "SYSTEMERR",
    "Decoder",
    "Frame",
    "encode",
]

STDIN = 0
STDOUT = 1
STDERR = 2
SYSTEMERR = 3
HEADER_SIZE = 8
MAX_PAYLOAD = 0xFFFFFFFF  # the length field's limit; longer payloads go out as several frames

_NAMES = ("stdin", "stdout", "stderr", "systemerr")


class Frame(NamedTuple):
    stream: int
    payload: bytes


def _check_stream(stream: int) -> None:
    if not 0 <= stream <= SYSTEMERR:
        raise InvalidArgument(f"unknown stream {stream} in a multiplexed stream header (0 to 3 are defined)")


def encode(stream: int, payload: bytes, *, max_payload: int = MAX_PAYLOAD) -> bytes:
    """The frames carrying ``payload`` on ``stream``: one frame, or several if it exceeds ``max_payload``.

    An empty payload gives one frame of length 0, which decoders accept; writers normally skip empty writes.
    """
    _check_stream(stream)
    if not 0 < max_payload <= MAX_PAYLOAD:
        raise InvalidArgument(f"max_payload must be between 1 and {MAX_PAYLOAD}, not {max_payload}")
    parts = [payload[i : i + max_payload] for i in range(0, len(payload), max_payload)] or [b""]
    out = bytearray()
    for part in parts:
        out += bytes((stream, 0, 0, 0)) + len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


class Decoder:
    """Incremental frame decoder: :meth:`feed` any chunks, get back the frames they complete, in order.

    Invariant: ``pending`` holds at most one incomplete frame's bytes; everything before it has been
    returned. A header naming an unknown stream raises InvalidArgument, and the decoder must not be used again.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        while len(buffer) - offset >= HEADER_SIZE:
            stream = buffer[offset]
            _check_stream(stream)
            length = int.from_bytes(buffer[offset + 4 : offset + HEADER_SIZE], "big")
            end = offset + HEADER_SIZE + length
            if len(buffer) < end:
                break
            frames.append(Frame(stream, bytes(buffer[offset + HEADER_SIZE : end])))
            offset = end
        # Drop the consumed prefix once per call, so a feed costs time linear in what it was given.
        del buffer[:offset]
        return frames

    def close(self) -> None:
        """The stream ended: raise InvalidArgument if it stopped inside a frame."""
        if self._buffer:
            detail = "header" if len(self._buffer) < HEADER_SIZE else f"{_NAMES[self._buffer[0]]} frame"
            raise InvalidArgument(
                f"multiplexed stream ended inside a {detail} ({len(self._buffer)} bytes left over)"
            )
