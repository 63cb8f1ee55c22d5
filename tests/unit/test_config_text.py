"""The agent config's text: plain JSON read without PyYAML, exactly as YAML reads it (issue 13).

contracts/config_text.py takes ``json`` only where it gives what ``yaml.safe_load`` gives; these
tests compare the two readers, with types (``1`` is not ``1.0``), over the operator's own
documents, thousands of generated JSON texts in several layouts, and every case the module
sends to YAML because the two differ there. A node's agent reads the operator's document
without importing yaml at all (a fresh interpreter); a YAML document still loads.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.contracts import config_text
from stellaops_runtime.contracts.config import ConfigError, load_config, parse_config
from stellaops_runtime.contracts.crd_specs import RuntimeObserverSpec
from stellaops_runtime.controller.agent_config import AGENT_CONFIG_KEY
from stellaops_runtime.controller.render_agent import render_agent_objects

ROOT = Path(__file__).resolve().parents[2]


def typed(doc: Any) -> Any:
    """The document with every scalar's type beside it (so 1, 1.0 and True differ)."""
    if isinstance(doc, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in doc.items()])
    if isinstance(doc, list):
        return ("list", [typed(v) for v in doc])
    return (type(doc).__name__, repr(doc))


def yaml_reads(text: str) -> Any:
    try:
        return ("ok", typed(yaml.safe_load(text)))
    except yaml.YAMLError as e:  # said as the agent says it: problem and position, no snippet
        return ("error", config_text.yaml_problem(e))
    except (ValueError, RecursionError) as e:
        return ("error", type(e).__name__)


def we_read(text: str) -> Any:
    try:
        return ("ok", typed(config_text.load_document(text)))
    except config_text.DocumentError as e:
        return ("error", str(e))
    except (ValueError, RecursionError) as e:
        return ("error", type(e).__name__)


# Settings a user gives the operator: a pattern with backslashes and non-ASCII text, numbers.
SPEC_EXTRA: dict[str, Any] = {
    "privacy": {"extraPatterns": ["token=\\S+", "caf\u00e9=[^ ]+"]},
    "hotSymbols": {"windowSeconds": 120, "minConfidenceThreshold": 0.5, "flushIntervalSeconds": 2.5},
    "metrics": {"port": 9100},
}


def operators_texts() -> list[str]:
    texts = []
    for source in ("tetragon", "native"):
        for extra in ({}, SPEC_EXTRA):
            store = {"secretRef": {"name": "s", "key": "u"}}
            spec = RuntimeObserverSpec.model_validate({"store": store, **extra})
            objs = render_agent_objects(name="o", uid="u", namespace="ns", spec=spec, source=source)
            texts += [o["data"][AGENT_CONFIG_KEY] for o in objs if o["kind"] == "ConfigMap"]
    return texts


def test_the_operators_document_is_plain_json_read_as_yaml_reads_it() -> None:
    texts = operators_texts()
    assert len(texts) == 4
    for text in texts:
        ok, doc = config_text.plain_json(text)
        assert ok, text
        assert typed(doc) == typed(yaml.safe_load(text))
        assert parse_config(doc) == parse_config(yaml.safe_load(text))


KEY_WORDS = ["a", "key", "<<", "=", "~", "null", "true", "yes", "on", "1e3", "0x10", "-", "? x", "a: b"]
CHARS = "abz09 :#-?&*!|>'\"%@`{}[],\\/\t\n\u00e9\u2028\U0001f600\x7f\x00"


def random_string(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(KEY_WORDS)
    return "".join(rng.choice(CHARS) for _ in range(rng.randrange(0, 12)))


def random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 5 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 7, 10**20, -(10**30), rng.randrange(-(10**6), 10**6)])
    if kind == 3:
        return rng.choice([0.0, -0.0, 1.5, -2.25, 0.1, 1e-5, 1e300, 123456.789, rng.uniform(-1e6, 1e6)])
    if kind in (4, 5, 6):
        return random_string(rng)
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


LAYOUTS = [
    {"indent": 2, "sort_keys": True},
    {},
    {"separators": (",", ":")},
    {"indent": 0},
    {"indent": 4, "ensure_ascii": False},
]


def test_generated_json_texts_read_as_yaml_reads_them() -> None:
    rng = random.Random(20261205)
    shortcut = 0
    total = 0
    for _ in range(1500):
        doc = random_value(rng, 0)
        for layout in LAYOUTS:
            text = json.dumps(doc, **layout)  # type: ignore[arg-type]
            total += 1
            shortcut += config_text.plain_json(text)[0]
            assert we_read(text) == yaml_reads(text), text
    assert shortcut > total // 4  # the shortcut is taken, not only the fallback


# Texts JSON reads but YAML reads otherwise (or refuses): each goes to YAML.
DIFFERENT = [
    '{"a": 1e3}',  # YAML 1.1: the string "1e3"
    '{"a": 1.5E+3}',
    '{"a": NaN}',
    '{"a": -Infinity}',
    '{"a": "\\ud83d\\ude00"}',  # JSON joins the pair, YAML keeps two surrogates
    '{"a":\t1}',  # a tab between tokens: YAML refuses it
    '{"a": "\x7f"}',  # a character YAML does not print
    '{"a": "\u0085"}',
    '{"a": "\u2028"}',
    '\ufeff{"a": 1}',
    '{"a"\n: 1}',  # a flow key whose colon is on the next line
    '{"' + "k" * 1100 + '": 1}',  # a flow key more than 1,024 characters before its colon
    "[" * 40 + "]" * 40,  # deeper than YAML's recursion allows
    '{"a": ' + "9" * 5000 + "}",  # an integer of more than 4,300 digits
]


@pytest.mark.parametrize("text", DIFFERENT, ids=range(len(DIFFERENT)))
def test_texts_where_json_and_yaml_differ_go_to_yaml(text: str) -> None:
    assert config_text.plain_json(text) == (False, None)
    assert we_read(text) == yaml_reads(text)


def test_not_json_is_yaml_errors_included() -> None:
    for text in ["tetragon:\n  address: h:1\n", "", "# only a comment\n", "- 1\n", "a: [1, 2\n", "a: b: c\n"]:
        assert config_text.plain_json(text)[0] is False
        assert we_read(text) == yaml_reads(text)


def test_a_node_reads_the_operators_document_without_yaml(tmp_path: Path) -> None:
    text = operators_texts()[0]
    path = tmp_path / AGENT_CONFIG_KEY
    path.write_text(text)
    code = textwrap.dedent(
        """
        import json, sys
        from stellaops_runtime.contracts.config import load_config
        cfg = load_config(sys.argv[1])
        print(json.dumps({"yaml": sorted(m for m in sys.modules if m == "yaml" or m.startswith("yaml.")),
                          "address": cfg.tetragon.address, "node": cfg.observation_node.enabled}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    out = json.loads(done.stdout.splitlines()[-1])
    want = parse_config(yaml.safe_load(text))
    assert out == {"yaml": [], "address": want.tetragon.address, "node": want.observation_node.enabled}
    assert load_config(path) == want


def test_yaml_documents_and_their_errors_are_as_before(tmp_path: Path) -> None:
    example = ROOT / "examples" / "agent-config.yaml"
    assert load_config(example) == parse_config(yaml.safe_load(example.read_text()))
    bad = tmp_path / "bad.yaml"
    bad.write_text("store:\n  url: postgresql://u:hunter2@db/x\n  : [\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as e:
        load_config(bad)
    assert "hunter2" not in str(e.value)  # PyYAML's message quotes the line: redacted as before
    cm = {"kind": "ConfigMap", "data": {"agent.yaml": '{"tetragon": {"address": "h:1"}}'}}
    assert parse_config(cm).tetragon.address == "h:1"
    with pytest.raises(ConfigError, match="is not valid YAML"):
        parse_config({"kind": "ConfigMap", "data": {"agent.yaml": "a: [1\n"}})
