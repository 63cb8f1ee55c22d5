"""An environment entry written value first with other members before its name (session 51).

``- value: S`` then ``  type: x`` then ``  name: DB_PASSWORD`` (and JSON's ``{"value": "S", "type": "x",
"name": "DB_PASSWORD"}``) kept ``S``: the value-first readers needed the name right after the value
(s50 RP's left-alone 2). A serializer keeping insertion order writes such entries.
"""

from __future__ import annotations

import json

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "P51firstSecret"


def _entries(doc: object) -> list[dict[str, object]]:
    return doc["env"] if isinstance(doc, dict) else doc  # type: ignore[return-value]


@pytest.mark.parametrize(
    "text",
    [
        "env:\n- value: {s}\n  type: plain\n  name: DB_PASSWORD\n",
        "env:\n  - value: a\n      {s}\n    type: plain\n    name: DB_PASSWORD\n",
        "env:\n- value: |\n    {s}\n  labels:\n    a: b\n  description: x\n  name: API_TOKEN\n",
        '[{{"value": "{s}", "type": "plain", "name": "DB_PASSWORD"}}]',
        '[{{"value":"{s}","a":1,"b":"c d","name":"DB_PASSWORD"}}]',
        # a comment line between the value and the name (s51 RP)
        "env:\n- value: {s}\n  # from the vault\n  name: DB_PASSWORD\n",
        "env:\n- value: {s}\n  type: plain\n\n    # c\n  name: DB_PASSWORD\n",
        "env:\n- value: a\n    {s}\n  # c\n  name: DB_PASSWORD\n",
    ],
)
def test_a_value_first_entrys_secret_goes_past_other_members(text: str) -> None:
    text = text.format(s=_S)
    doc = json.loads(text) if text.startswith("[") else yaml.safe_load(text)
    entry = _entries(doc)[0]
    assert _S in str(entry["value"]) and str(entry["name"]).endswith(("PASSWORD", "TOKEN"))
    out = written_buffer(text)
    assert _S not in out
    assert "DB_PASSWORD" in out or "API_TOKEN" in out
    assert _S not in exec_arguments("/usr/bin/app", text)


@pytest.mark.parametrize(
    "text",
    [
        "env:\n- value: keep\n  type: plain\n  name: LOG_LEVEL\n",
        "env:\n- value: keep\n  type: plain\n- name: DB_PASSWORD\n  valueFrom:\n    secretKeyRef: {}\n",
        '[{"value": "keep", "type": "x"}, {"name": "DB_PASSWORD", "valueFrom": {}}]',
    ],
)
def test_another_entrys_value_stays(text: str) -> None:
    assert written_buffer(text) == text


def test_value_first_members_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    units = ("- value: a\n  t: b\n", '{"value": "a", "t": "b", ', "  x: y\n- value: a\n  b: |\n    c\n")
    for unit in (*units, "- value: a\n  # c\n", "- value: a\n" + "  # c\n" * 40):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
