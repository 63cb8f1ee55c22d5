"""The configuration models as code uses them: frozen values, keyword construction, dumps, clear errors.

The models are dataclasses built by contracts/config_fields.py, not pydantic;
these tests hold the surface the rest of the agent and the tests rely on
(``model_validate``, ``model_dump``, equality, hashing, immutability), the
error format (every problem of a document, each under its key path), and the
places where validation is stricter than pydantic's was.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys

import pytest

from stellaops_runtime.contracts.config import (
    AgentConfig,
    ConfigError,
    EventFilter,
    LifecycleConfig,
    NativeSourceConfig,
    PrivacyConfig,
    ShutdownConfig,
    TetragonConfig,
    parse_config,
)
from stellaops_runtime.contracts.config_fields import MAX_PROBLEMS


def test_models_are_frozen_values_that_compare_hash_copy_and_pickle() -> None:
    a, b = (
        parse_config({"shutdown": {"graceSeconds": "15s"}}),
        parse_config({"shutdown": {"graceSeconds": 15}}),
    )
    assert a == b and a is not b and a != parse_config({})
    assert a.shutdown == ShutdownConfig(graceSeconds=15) and hash(a.shutdown) == hash(
        ShutdownConfig(grace_seconds=15)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.shutdown.grace_seconds = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.tetragon = TetragonConfig()  # type: ignore[misc]
    with pytest.raises(AttributeError):  # slots: no attribute that is not a field
        object.__setattr__(a, "typo", 1)
    assert copy.deepcopy(a) == a and pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(TypeError):  # like pydantic's frozen models: a list field is not hashable
        hash(a)


def test_keyword_construction_takes_yaml_keys_python_names_and_deprecated_names() -> None:
    t = TetragonConfig(address="unix:///run/t.sock", connectionTimeout="2s", queue_size="1000")
    assert (t.address, t.timeout_seconds, t.queue_size) == ("unix:///run/t.sock", 2.0, 1000)
    assert TetragonConfig(timeoutSeconds=3).timeout_seconds == 3.0
    assert PrivacyConfig(extraEnvNamePatterns=("A_*",)).extra_env_name_patterns == ["A_*"]
    assert AgentConfig(tetragon=t, hotSymbols={"maxKeys": 100}).tetragon is t
    with pytest.raises(ConfigError) as e:
        TetragonConfig(address="nohostport", connectionTimeout=0, bogus=1)
    assert str(e.value) == (
        "invalid configuration:\n"
        "  address: expected HOST:PORT or unix:///path, got 'nohostport'\n"
        "  connectionTimeout: Input should be greater than 0, got 0\n"
        "  bogus: unknown key"
    )
    with pytest.raises(ConfigError, match="reconnectMaxSeconds must be >="):
        LifecycleConfig(reconnectInitialSeconds=5, reconnectMaxSeconds=1)


def test_model_validate_and_dump_read_back_as_the_same_model() -> None:
    f = EventFilter.model_validate({"podRegex": ["^web-"], "event_types": ["PROCESS_EXEC"]})
    assert f.model_dump(by_alias=True) == {
        "namespaces": [], "podRegex": ["^web-"], "binaryRegex": [], "eventTypes": ["PROCESS_EXEC"]
    }  # fmt: skip
    assert f.model_dump() == {
        "namespaces": [], "pod_regex": ["^web-"], "binary_regex": [], "event_types": ["PROCESS_EXEC"]
    }  # fmt: skip
    assert EventFilter.model_validate(f) is f
    c = parse_config({"tetragon": {"allow": [f]}, "native": {"tcpState": True, "retrySeconds": "1m"}})
    assert c.tetragon.allow == [f]
    dumped = c.model_dump(by_alias=True, mode="json")
    assert dumped["native"] == {**NativeSourceConfig().model_dump(by_alias=True), "retrySeconds": 60.0,
                                "tcpState": True}  # fmt: skip
    assert parse_config(dumped) == c and parse_config(c.model_dump()) == c
    dumped["tetragon"]["allow"][0]["podRegex"].append("x")  # a dump is a copy
    assert c.tetragon.allow[0].pod_regex == ["^web-"]


def test_every_problem_of_a_document_is_reported_under_its_key_path() -> None:
    doc = {
        "tetragon": {"queueSize": "lots", "allow": [{"eventTypes": ["PROCESS_EXEC", "EXEC"]}, 5]},
        "hotSymbols": {"enabled": "maybe", 7: 1},
        "privacy": {"extraPatterns": ["ok", "("]},
        "metrics": None,
        "nodeName": "n",
        "node_name": "n",
    }
    with pytest.raises(ConfigError) as e:
        parse_config(doc)
    assert str(e.value) == (
        "invalid configuration:\n"
        "  node_name: given twice, as nodeName and as node_name: give only nodeName\n"
        "  tetragon.allow.0.eventTypes.1: expected one of 'PROCESS_EXEC', 'PROCESS_EXIT', "
        "'PROCESS_KPROBE', 'PROCESS_TRACEPOINT', 'PROCESS_LOADER', 'PROCESS_UPROBE', 'PROCESS_LSM', "
        "'PROCESS_USDT', got 'EXEC'\n"
        "  tetragon.allow.1: expected a mapping, got 5\n"
        "  tetragon.queueSize: expected an integer, got 'lots'\n"
        "  hotSymbols.enabled: expected true or false, got 'maybe'\n"
        "  hotSymbols.7: unknown key\n"
        "  privacy.extraPatterns: invalid regular expression '(': missing ), unterminated subpattern at "
        "position 0\n"
        "  metrics: expected a mapping, got None"
    )


def test_a_document_with_thousands_of_problems_reports_the_first_hundred() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"tetragon": {f"k{i}": i for i in range(5000)}})
    lines = str(e.value).splitlines()
    assert len(lines) == 1 + MAX_PROBLEMS + 1 and lines[-1] == f"  ... and {5000 - MAX_PROBLEMS} more"


def test_values_in_messages_are_redacted_and_cut() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"store": {"url": "mysql://admin:" + "p" * 200 + "@db/x", "spoolPath": 5}})
    message = str(e.value)
    assert "ppp" not in message and "mysql://admin:***@db/x" in message
    assert "store.spoolPath: expected a string, got 5" in message


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"metrics": {"port": True}}, "metrics.port: expected an integer, got True"),
        ({"hotSymbols": {"minConfidenceThreshold": False}}, "expected a number, got False"),
        ({"tetragon": {"reconnectMaxSeconds": ".inf"}}, "expected a duration"),
        ({"tetragon": {"reconnectMaxSeconds": float("inf")}}, "expected a finite duration, got inf"),
        ({"hotSymbols": {"aggregationWindowSeconds": float("inf")}}, "expected a finite duration, got inf"),
        ({"store": {"connectTimeout": 10**400}}, "got an integer of 1329 bits"),
        ({"tetragon": {"connectionTimeout": "1s" * 60}}, "tetragon.connectionTimeout: expected a duration"),
        ({"privacy": {"extraPatterns": ["a" * 4097]}}, "a regular expression has at most 4096 characters"),
        ({"tetragon": {"allow": [{"podRegex": ["a" * 4097]}]}}, "allow.0.podRegex: a regular expression has"),
        ({"tetragon": {"deny": [{"binaryRegex": ["a" * 4097]}]}}, "deny.0.binaryRegex: a regular expression"),
        ({"tetragon": {"address": "h:" + "1" * 5000}}, "expected HOST:PORT or unix:///path"),
    ],
)
def test_where_validation_is_stricter_than_pydantics_was(doc: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(doc)
    assert says in str(e.value)


def test_what_pydantic_took_is_still_taken() -> None:
    c = parse_config({
        "tetragon": {"queueSize": "1_000", "connectionTimeout": " 5 "},
        "hotSymbols": {"maxKeys": 100.0, "aggregationWindowSeconds": "60.0", "enabled": "off"},
        "metrics": {"port": "+8081"},
        "lifecycle": {"enabled": "yes", "criAddresses": ["/a"]},
        "privacy": {"extraPatterns": ["a" * 4096], "entropyThreshold": "1e-1"},
    })  # fmt: skip
    assert (c.tetragon.queue_size, c.tetragon.timeout_seconds) == (1000, 5.0)
    assert (c.hot_symbols.max_keys, c.hot_symbols.window_seconds, c.hot_symbols.enabled) == (100, 60, False)
    assert type(c.hot_symbols.max_keys) is int and c.metrics.port == 8081 and c.lifecycle.enabled is True
    assert c.privacy.entropy_threshold == 0.1


def test_the_agents_config_modules_do_not_import_pydantic() -> None:
    code = (
        "import sys, stellaops_runtime.contracts.config as c; c.parse_config({'native': {'tcpState': True}});"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
