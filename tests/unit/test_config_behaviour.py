"""The configuration without pydantic does what the pydantic models did, input by input.

tests/fixtures/config_behaviour.json was recorded from the pydantic models at
commit 9cb4262 (tests/fixtures/record_config_behaviour.py): for every key,
defaults, values at and just outside its bounds, wrong types, numeric strings,
NUL bytes, huge numbers, NaN and infinities, durations; for whole documents,
deprecated names, cross-key checks and section shapes. Every row must be
accepted or refused as it was, with the same value of the same type; the rows
marked ``tightened`` must have their new outcome instead (the four kinds of
change are listed in ``TIGHTENED``; test_config_window_divides_day.py says why the
fourth; the fifth: a NUL byte crashed the agent
later, at the first use of the path; the sixth: test_config_empty_deny.py; the seventh:
test_lifecycle_agent_part.py's containerd namespaces). A refusal must name
the key path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.config import ConfigError, parse_config

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "config_behaviour.json"
ROWS: dict[str, list[list[Any]]] = json.loads(FIXTURE.read_text())["rows"]

# Every deliberate difference from pydantic's behaviour, as the fixture marks them.
TIGHTENED = {
    "a boolean is not a number",
    "pydantic's model crashed with OverflowError; a ConfigError naming the key",
    "an infinite duration is refused",
    "a window that does not divide a day (86400 s) straddles midnight: refused",
    "a NUL byte in a name, path or address is refused (no file, socket or name holds one)",
    "a deny filter that sets no field matches every event (Tetragon ANDs set fields): refused",
    "a containerd namespace follows containerd's identifier rule (letters and digits joined by single "
    ". _ -, at most 76 characters): anything else went raw into every call's header, and containerd "
    "refuses it",
}


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type at every level (1, 1.0 and True differ); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _case(key: str, value: Any) -> tuple[Any, list[str] | None, str]:
    """The document of one row, the dump path its value is read at, the key path an error names."""
    if key == "(document)":
        return value, None, ""
    if "[]." in key:  # tetragon.allow[].podRegex: one filter with that key
        head, field = key.split("[].")
        section, side = head.split(".")
        return {section: {side: [{field: value}]}}, [section, side], f"{section}.{side}.0.{field}"
    doc: Any = value
    for part in reversed(key.split(".")):
        doc = {part: doc}
    return doc, key.split("."), key


def _outcome(doc: Any, path: list[str] | None) -> tuple[Any, str]:
    try:
        c = parse_config(doc)
    except ConfigError as e:
        return "ConfigError", str(e)
    dumped: Any = c.model_dump(by_alias=True, mode="python")
    for p in path or []:
        dumped = dumped[p]
    # What is accepted reads back as the same config, by YAML keys and by Python names.
    assert parse_config(c.model_dump(by_alias=True)) == c
    assert parse_config(c.model_dump()) == c
    return {"ok": dumped}, ""


def test_the_fixture_covers_every_key_and_marks_only_the_listed_changes() -> None:
    keys = {k for k in ROWS if k != "(document)" and "[]" not in k}
    dumped = parse_config({}).model_dump(by_alias=True)
    expected = {f"{s}.{k}" for s, v in dumped.items() if isinstance(v, dict) for k in v}
    expected |= {k for k, v in dumped.items() if not isinstance(v, dict)}
    assert keys == expected
    marks = [row[2]["tightened"] for rows in ROWS.values() for row in rows if len(row) > 2]
    assert set(marks) == TIGHTENED and len(marks) == 73


@pytest.mark.parametrize("key", sorted(ROWS))
def test_every_input_is_taken_or_refused_as_the_pydantic_models_did(key: str) -> None:
    for value, recorded, *mark in ROWS[key]:
        doc, path, where = _case(key, value)
        expected = mark[0]["now"] if mark else recorded
        got, message = _outcome(doc, path)
        assert _same(got, expected), (key, value, recorded, got, message)
        if got == "ConfigError" and where:
            assert message.startswith("invalid configuration:\n  "), message
            assert where in message, (key, value, message)
