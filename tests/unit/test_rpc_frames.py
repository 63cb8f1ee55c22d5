"""The rpc package's pure parts: HTTP/2 frames against hand-written bytes, targets, status texts."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import pytest

from stellaops_runtime.lifecycle.containerd_client import target_of
from stellaops_runtime.rpc import frames as f
from stellaops_runtime.rpc.status import StatusCode, decode_message, encode_message
from stellaops_runtime.rpc.stream import Stream
from stellaops_runtime.rpc.target import Address, parse_target


def test_split_frames_cuts_whole_frames_and_leaves_a_partial_one() -> None:
    data = bytes.fromhex("000003000100000003") + b"abc"  # DATA, END_STREAM, stream 3
    ping = bytes.fromhex("000008060100000000") + b"12345678"
    frames, used, error = f.split_frames(data + ping + ping[:12], 16384)
    assert error is None
    assert frames == [(f.DATA, 1, 3, b"abc"), (f.PING, 1, 0, b"12345678")]
    assert used == len(data) + len(ping)


def test_the_reserved_bit_of_a_stream_id_is_ignored_and_an_oversize_frame_is_an_error() -> None:
    frames, _, _ = f.split_frames(bytes.fromhex("000000000080000005"), 16384)
    assert frames == [(f.DATA, 0, 5, b"")]
    ok = f.encode_frame(f.DATA, 0, 1, b"x")
    frames, used, error = f.split_frames(ok + bytes.fromhex("004001000000000001"), 16384)
    assert frames == [(f.DATA, 0, 1, b"x")] and used == len(ok)
    assert error is not None and error.code == f.FRAME_SIZE_ERROR


def test_encoders_write_rfc_9113_bytes() -> None:
    assert f.encode_window_update(7, 1000) == bytes.fromhex("000004080000000007000003e8")
    assert f.encode_rst_stream(1, f.CANCEL) == bytes.fromhex("00000403000000000100000008")
    assert f.encode_settings({f.INITIAL_WINDOW_SIZE: 1 << 20}) == bytes.fromhex(
        "000006040000000000000400100000"
    )
    assert f.encode_ping(b"abcdefgh", ack=True) == bytes.fromhex("000008060100000000") + b"abcdefgh"
    assert f.encode_goaway(3, 2, b"x") == bytes.fromhex("0000090700000000000000000300000002") + b"x"
    assert f.grpc_message(b"hi") == b"\x00\x00\x00\x00\x02hi"


def test_a_header_block_over_the_frame_size_goes_on_in_continuation_frames() -> None:
    out = f.encode_headers(1, b"a" * 25, end_stream=True, max_frame_size=10)
    frames, used, error = f.split_frames(out, 10)
    assert error is None and used == len(out)
    assert [(t, fl) for t, fl, _, _ in frames] == [
        (f.HEADERS, f.FLAG_END_STREAM),
        (f.CONTINUATION, 0),
        (f.CONTINUATION, f.FLAG_END_HEADERS),
    ]
    assert b"".join(p for _, _, _, p in frames) == b"a" * 25


def test_padding_and_priority_are_read() -> None:
    assert f.parse_data(f.FLAG_PADDED, b"\x02abc\0\0") == b"abc"
    payload = b"\x01" + b"\x80\0\0\1" + b"\x10" + b"blk" + b"\0"  # pad 1, priority 5 bytes
    assert f.parse_headers(f.FLAG_PADDED | f.FLAG_PRIORITY, payload) == b"blk"
    with pytest.raises(f.FrameError):
        f.parse_data(f.FLAG_PADDED, b"\x04abc")
    with pytest.raises(f.FrameError):
        f.parse_settings(0, 0, b"\0\5\0\0\0\1")  # MAX_FRAME_SIZE below 16384
    with pytest.raises(f.FrameError):
        f.parse_window_update(b"\0\0\0\0")
    assert f.parse_goaway(0, bytes.fromhex("800000050000000b") + b"dbg") == (5, 11, b"dbg")


@pytest.mark.parametrize(
    ("target", "address"),
    [
        ("unix:///run/tetragon/tetragon.sock", Address(unix="/run/tetragon/tetragon.sock")),
        ("unix:/run/a.sock", Address(unix="/run/a.sock")),
        ("unix:rel/a.sock", Address(unix="rel/a.sock")),
        ("unix:///run/a%20b%41.sock", Address(unix="/run/a bA.sock")),
        ("unix:///run/a.sock?x#y", Address(unix="/run/a.sock")),
        ("unix-abstract:tetra", Address(unix="\0tetra")),
        ("localhost:54321", Address(host="localhost", port=54321, authority="localhost:54321")),
        ("[::1]:5", Address(host="::1", port=5, authority="[::1]:5")),
        (
            "dns:///tetragon.kube-system:54321",
            Address(host="tetragon.kube-system", port=54321, authority="tetragon.kube-system:54321"),
        ),
        ("ipv4:10.0.0.1:7", Address(host="10.0.0.1", port=7, authority="10.0.0.1:7")),
        ("example.org", Address(host="example.org", port=443, authority="example.org")),
    ],
)
def test_targets_are_read_as_grpc_reads_them(target: str, address: Address) -> None:
    assert parse_target(target) == address


@pytest.mark.parametrize("path", ["/run/containerd/containerd.sock", "/tmp/a b/%41?#x.sock", "rel/ü.sock"])
def test_a_socket_path_encoded_by_target_of_is_decoded_back(path: str) -> None:
    assert parse_target(target_of(path)).unix == path


@pytest.mark.parametrize("bad", ["unix://host/path", "unix:", "host:port", "[::1", "h:70000"])
def test_a_target_grpc_would_not_dial_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_target(bad)


def test_grpc_message_text_round_trips_percent_encoding() -> None:
    text = "héllo 100% ✓ %41"
    assert encode_message(text) == "h%C3%A9llo 100%25 %E2%9C%93 %2541"
    assert decode_message(encode_message(text)) == text
    assert decode_message("plain, no escapes") == "plain, no escapes"
    assert StatusCode(14) is StatusCode.UNAVAILABLE and StatusCode.UNAUTHENTICATED.value == 16


def test_a_stream_credits_an_incomplete_message_at_once_and_a_whole_one_when_read() -> None:
    s = Stream(1, 1 << 20, 65535, 65535)
    whole = f.grpc_message(b"a" * 100)
    big = f.grpc_message(b"b" * 1000)
    assert s.feed(whole + big[:300]) is None
    assert [(m, owed) for m, owed in s.queue] == [(b"a" * 100, 105)]  # credited when the reader takes it
    assert s.to_credit == 300  # the incomplete message's bytes: at once
    assert s.feed(big[300:]) is None
    assert s.queue[-1] == (b"b" * 1000, len(big) - 300) and s.to_credit == 300 and not s.rbuf
    s2 = Stream(3, 10, 65535, 65535)
    error = s2.feed(f.grpc_message(b"x" * 11))
    assert error is not None and error.code() is StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "Received message larger than max (11 vs. 10)"


def test_the_package_imports_no_grpc() -> None:
    code = (
        "import sys, stellaops_runtime.rpc; "
        "tops = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted(m for m in tops if 'grpc' in m or m in ('h2', 'google')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_large_message_is_copied_once_when_it_completes() -> None:
    """An 8 MiB event over 16 KiB frames: the buffer it grew in plus one copy, not two."""
    body = b"z" * (8 << 20)
    data = f.grpc_message(body)
    pieces = [data[i : i + 16384] for i in range(0, len(data), 16384)]
    stream = Stream(1, 64 << 20, 65535, 1 << 30)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for piece in pieces:
            assert stream.feed(piece) is None
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert stream.queue[0][0] == body and not stream.rbuf
    size = len(body)
    assert peak < 2.6 * size, f"{peak / size:.2f} times the message"
