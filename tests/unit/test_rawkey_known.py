"""adapter/rawkey.py: a payload whose key is known is split at its trailing time, with the same answer.

``proto_key(payload, known)`` takes a payload that ends with its time field
and whose bytes before it are a key it gave before without reading those
bytes field by field again. Whatever keys ``known`` holds (its own keys of
other payloads, of every split of this one, an export line's key, none), the
answer must be what reading the payload field by field gives: the same key
and time, or None.
"""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from stellaops_runtime.adapter import rawkey
from stellaops_runtime.wire.tetragon import events_pb2
from tests.unit.test_rawkey import T, _line, _msg

S = 1_000_000_000


def _time_field(t: bytes) -> bytes:
    return b"\xca\x3e" + bytes([len(t)]) + t


def _payloads() -> dict[str, bytes]:
    plain = _msg(T).SerializeToString()
    no_time = _msg(T)
    no_time.ClearField("time")
    body = no_time.SerializeToString()
    ts = Timestamp(seconds=T // S, nanos=T % S).SerializeToString()
    odd = Timestamp(seconds=0x3ECA, nanos=0x3ECA).SerializeToString()  # the time's tag inside its value
    line_key = rawkey.json_key(_line(_msg(T)))
    assert line_key is not None
    return {
        "plain": plain,
        "the time first": _time_field(ts) + body,
        "the time twice": plain + _time_field(ts),
        "a time whose value holds its tag": body + _time_field(odd),
        "a time past 22 bytes": body + _time_field(ts + b"\x18\x01" * 6),
        "a time that does not decode": body + _time_field(b"\x99"),
        "a zero time": body + _time_field(b""),
        "only a time": _time_field(ts),
        "a key ending like a JSON line": _msg(T, fn="f}").SerializeToString(),
        "a broken field before the time": b"\x0a\x7f" + body[2:] + _time_field(ts),
        "an export line's key, then a time": line_key[0] + _time_field(ts),
        "the time's tag in a field's data": body[:-1] + b"\xca\x3e\x01" + body[-1:] + _time_field(ts),
    }


PAYLOADS = _payloads()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_a_known_key_gives_what_reading_gives(name: str) -> None:
    payload = PAYLOADS[name]
    want = rawkey.proto_key(payload)
    everything = {k[0] for k in map(rawkey.proto_key, PAYLOADS.values()) if k is not None}
    line = rawkey.json_key(_line(_msg(T)))
    assert line is not None
    everything.add(line[0])
    # Every split a shortcut could try, as the key proto_key gives for it followed by a time.
    n, ts = len(payload), Timestamp(seconds=9, nanos=1).SerializeToString()
    splits = (rawkey.proto_key(payload[:j] + _time_field(ts)) for j in range(max(0, n - 30), n))
    given = {k[0] for k in splits if k is not None}
    for known in (set(), everything, given, everything | given):
        assert rawkey.proto_key(payload, known) == want


def test_the_shortcut_reads_no_field_of_a_known_key(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = _msg(T + 5).SerializeToString()
    got = rawkey.proto_key(payload)
    assert got is not None and got[1] == T + 5
    scanned: list[bytes] = []
    real = rawkey._scan

    def counting(buf: bytes) -> tuple[int, int, int] | None:
        scanned.append(buf)
        return real(buf)

    monkeypatch.setattr(rawkey, "_scan", counting)
    assert rawkey.proto_key(payload, {got[0]}) == got
    assert scanned == []
    assert rawkey.proto_key(payload) == got  # unknown: its fields are read (all but the time)
    assert scanned == [got[0]]
    assert events_pb2.GetEventsResponse.FromString(payload).time.ToNanoseconds() == T + 5
