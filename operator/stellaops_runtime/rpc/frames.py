"""HTTP/2 frames (RFC 9113) and gRPC's 5-byte message prefix, encoded and decoded; no I/O.

The agent reads Tetragon's event stream at up to ~150,000 events a second, one DATA frame each;
the ``h2`` library costs ~16 us a frame, so the client frames HTTP/2 itself. This module is the
pure part: :func:`split_frames` cuts received bytes into frames (one struct unpack per frame,
the hot path), the ``parse_*`` functions read a frame's payload and raise :class:`FrameError`
(a connection error) on a malformed one, the ``encode_*`` functions build what the client sends.
Header blocks are HPACK-coded by the caller (the ``hpack`` package); here they are bytes.
"""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

# SETTINGS identifiers
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

# error codes
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

DEFAULT_MAX_FRAME_SIZE = 16384
DEFAULT_WINDOW = 65535
MAX_WINDOW = (1 << 31) - 1

_HEADER = struct.Struct(">BHBBI")
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")
_GOAWAY = struct.Struct(">II")
_PREFIX = struct.Struct(">BI")

Frame = tuple[int, int, int, bytes]  # type, flags, stream id, payload


class FrameError(Exception):
    """A frame the connection cannot go on after: it ends with GOAWAY(code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def split_frames(buf: bytes, max_frame_size: int) -> tuple[list[Frame], int, FrameError | None]:
    """The whole frames at the start of ``buf``, how many bytes they took, and a FrameError.

    The error is for a frame longer than ``max_frame_size`` (what we advertised): the frames before
    it are returned all the same. A partial frame at the end is left for the next call.
    """
    frames: list[Frame] = []
    pos = 0
    end_of_buf = len(buf)
    unpack = _HEADER.unpack_from
    while end_of_buf - pos >= 9:
        hi, lo, ftype, flags, sid = unpack(buf, pos)
        length = (hi << 16) | lo
        if length > max_frame_size:
            error = FrameError(
                FRAME_SIZE_ERROR, f"frame of {length} bytes over our max frame size {max_frame_size}"
            )
            return frames, pos, error
        end = pos + 9 + length
        if end > end_of_buf:
            break
        frames.append((ftype, flags, sid & 0x7FFFFFFF, buf[pos + 9 : end]))
        pos = end
    return frames, pos, None


def _strip_padding(flags: int, payload: bytes, what: str) -> bytes:
    if not flags & FLAG_PADDED:
        return payload
    if not payload:
        raise FrameError(PROTOCOL_ERROR, f"padded {what} frame without a pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise FrameError(PROTOCOL_ERROR, f"{what} frame padding ({pad}) not shorter than its payload")
    return payload[1 : len(payload) - pad]


def parse_data(flags: int, payload: bytes) -> bytes:
    """A DATA frame's data (padding removed); flow control counts the whole payload."""
    return _strip_padding(flags, payload, "DATA")


def parse_headers(flags: int, payload: bytes) -> bytes:
    """A HEADERS frame's header block fragment (padding and priority fields removed)."""
    fragment = _strip_padding(flags, payload, "HEADERS")
    if flags & FLAG_PRIORITY:
        if len(fragment) < 5:
            raise FrameError(FRAME_SIZE_ERROR, "HEADERS frame too short for its priority fields")
        fragment = fragment[5:]
    return fragment


def parse_settings(flags: int, sid: int, payload: bytes) -> list[tuple[int, int]]:
    """A SETTINGS frame's (identifier, value) pairs; an ACK has none."""
    if sid != 0:
        raise FrameError(PROTOCOL_ERROR, "SETTINGS frame on a stream")
    if flags & FLAG_ACK:
        if payload:
            raise FrameError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
        return []
    if len(payload) % 6:
        raise FrameError(FRAME_SIZE_ERROR, f"SETTINGS payload of {len(payload)} bytes")
    settings = [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]
    for ident, value in settings:
        if ident == ENABLE_PUSH and value > 1:
            raise FrameError(PROTOCOL_ERROR, f"SETTINGS_ENABLE_PUSH {value}")
        if ident == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise FrameError(FLOW_CONTROL_ERROR, f"SETTINGS_INITIAL_WINDOW_SIZE {value}")
        if ident == MAX_FRAME_SIZE and not DEFAULT_MAX_FRAME_SIZE <= value <= (1 << 24) - 1:
            raise FrameError(PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE {value}")
    return settings


def parse_ping(sid: int, payload: bytes) -> bytes:
    if sid != 0:
        raise FrameError(PROTOCOL_ERROR, "PING frame on a stream")
    if len(payload) != 8:
        raise FrameError(FRAME_SIZE_ERROR, f"PING payload of {len(payload)} bytes")
    return payload


def parse_window_update(payload: bytes) -> int:
    if len(payload) != 4:
        raise FrameError(FRAME_SIZE_ERROR, f"WINDOW_UPDATE payload of {len(payload)} bytes")
    increment = int(_U32.unpack(payload)[0]) & 0x7FFFFFFF
    if increment == 0:
        raise FrameError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
    return increment


def parse_rst_stream(sid: int, payload: bytes) -> int:
    if sid == 0:
        raise FrameError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
    if len(payload) != 4:
        raise FrameError(FRAME_SIZE_ERROR, f"RST_STREAM payload of {len(payload)} bytes")
    return int(_U32.unpack(payload)[0])


def parse_goaway(sid: int, payload: bytes) -> tuple[int, int, bytes]:
    """A GOAWAY's last stream id, error code and debug data."""
    if sid != 0:
        raise FrameError(PROTOCOL_ERROR, "GOAWAY on a stream")
    if len(payload) < 8:
        raise FrameError(FRAME_SIZE_ERROR, f"GOAWAY payload of {len(payload)} bytes")
    last, code = _GOAWAY.unpack_from(payload)
    return last & 0x7FFFFFFF, code, payload[8:]


def encode_frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _HEADER.pack(length >> 16, length & 0xFFFF, ftype, flags, sid) + payload


def encode_settings(settings: dict[int, int]) -> bytes:
    return encode_frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in settings.items()))


def encode_settings_ack() -> bytes:
    return encode_frame(SETTINGS, FLAG_ACK, 0)


def encode_ping(data: bytes, *, ack: bool = False) -> bytes:
    return encode_frame(PING, FLAG_ACK if ack else 0, 0, data)


def encode_window_update(sid: int, increment: int) -> bytes:
    return encode_frame(WINDOW_UPDATE, 0, sid, _U32.pack(increment))


def encode_rst_stream(sid: int, code: int) -> bytes:
    return encode_frame(RST_STREAM, 0, sid, _U32.pack(code))


def encode_goaway(last_sid: int, code: int, debug: bytes = b"") -> bytes:
    return encode_frame(GOAWAY, 0, 0, _GOAWAY.pack(last_sid, code) + debug)


def encode_headers(sid: int, block: bytes, *, end_stream: bool, max_frame_size: int) -> bytes:
    """A header block as HEADERS and as many CONTINUATION frames as ``max_frame_size`` needs."""
    first, rest = block[:max_frame_size], block[max_frame_size:]
    flags = FLAG_END_STREAM if end_stream else 0
    if not rest:
        return encode_frame(HEADERS, flags | FLAG_END_HEADERS, sid, first)
    out = [encode_frame(HEADERS, flags, sid, first)]
    while rest:
        piece, rest = rest[:max_frame_size], rest[max_frame_size:]
        out.append(encode_frame(CONTINUATION, 0 if rest else FLAG_END_HEADERS, sid, piece))
    return b"".join(out)


def encode_data(sid: int, data: bytes, *, end_stream: bool) -> bytes:
    """One DATA frame (the caller keeps it within the peer's max frame size and windows)."""
    return encode_frame(DATA, FLAG_END_STREAM if end_stream else 0, sid, data)


def grpc_message(data: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return _PREFIX.pack(0, len(data)) + data


def grpc_prefix(buf: bytes | bytearray, pos: int = 0) -> tuple[int, int]:
    """The compressed flag and length of the gRPC message whose prefix starts at ``pos``."""
    flag, length = _PREFIX.unpack_from(buf, pos)
    return int(flag), int(length)
