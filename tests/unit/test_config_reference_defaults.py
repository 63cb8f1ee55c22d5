"""docs/configuration.md gives the agent's defaults: its YAML reference and its key tables.

"Without ``--config``, every default applies": the reference block at the top
of the page shows each key with its default, and the sections' tables
(``| key | default | meaning |``) give the rest. Both are read from the page
and compared with what the config model does with no file, so a default
changed in the code or the docs alone fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from stellaops_runtime.contracts.config import parse_config

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def test_the_reference_block_is_a_config_of_every_default() -> None:
    block = re.search(r"```yaml\n(.*?)```", DOC, re.S)
    assert block is not None
    shown = yaml.safe_load(block.group(1))
    assert {"tetragon", "hotSymbols", "privacy", "store", "shutdown", "metrics", "native"} <= set(shown)
    assert parse_config(shown).model_dump() == parse_config({}).model_dump()


def test_every_default_in_a_key_table_is_the_codes() -> None:
    defaults: dict[str, Any] = parse_config({}).model_dump(by_alias=True)
    checked, wrong = 0, []
    for section in re.split(r"^## ", DOC, flags=re.M)[1:]:
        name = section.split("\n", 1)[0].strip()
        for key, text in re.findall(r"^\| `([A-Za-z]+)` \| `([^`]*)` \|", section, re.M):
            model = defaults.get(name)
            assert isinstance(model, dict) and key in model, f"{name}.{key} is no config key"
            if yaml.safe_load(text) != model[key]:
                wrong.append(f"{name}.{key}: docs {text!r}, code {model[key]!r}")
            checked += 1
    assert not wrong, wrong
    assert checked >= 35  # privacy, symbols, attribution, observationNode, native, lifecycle, shutdown
