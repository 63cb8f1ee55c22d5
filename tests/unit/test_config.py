"""The agent config: defaults, the ConfigMap form, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stellaops_runtime.contracts.config import AgentConfig, ConfigError, load_config, parse_config

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: stellaops-runtime-agent
  namespace: stellaops-system
data:
  config.yaml: |
    tetragon:
      address: unix:///var/run/tetragon/tetragon.sock
      connectionTimeout: 10s
      allow:
        - namespaces: [shop, payments]
          eventTypes: [PROCESS_UPROBE, PROCESS_KPROBE]
      deny:
        - binaryRegex: ["^/usr/bin/kubectl$"]
    hotSymbols:
      aggregationWindowSeconds: 60
      minConfidenceThreshold: 0.5
      flushIntervalSeconds: 5
    privacy:
      redactArguments: true
      extraPatterns: ["internal-token-[a-z0-9]+"]
      symbolIdOnlyMode: false
      allowedNamespaces: [shop]
"""


def test_defaults() -> None:
    c = AgentConfig()
    assert c.tetragon.address == "localhost:54321"
    assert c.hot_symbols.window_seconds == 60
    assert c.store.url.startswith("sqlite:///")
    assert c.metrics.port == 8080


def test_configmap_document_is_a_valid_config(tmp_path) -> None:
    p = tmp_path / "cm.yaml"
    p.write_text(CONFIGMAP)
    c = load_config(p)
    assert c.tetragon.address == "unix:///var/run/tetragon/tetragon.sock"
    assert c.tetragon.allow[0].namespaces == ["shop", "payments"]
    assert c.tetragon.allow[0].event_types == ["PROCESS_UPROBE", "PROCESS_KPROBE"]
    assert c.hot_symbols.min_confidence_threshold == 0.5
    assert c.privacy.allowed_namespaces == ["shop"]
    assert c.tetragon.timeout_seconds == 10.0 and c.hot_symbols.window_seconds == 60
    assert c.privacy.symbol_id_only is False


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"hotSymbols": {"flushIntervalSecond": 3}}, "hotSymbols.flushIntervalSecond: unknown key"),
        ({"tetragon": {"address": "tetragon"}}, "tetragon.address"),
        ({"tetragon": {"address": "unix://"}}, "needs a socket path"),
        ({"hotSymbols": {"minConfidenceThreshold": 1.5}}, "hotSymbols.minConfidenceThreshold"),
        ({"privacy": {"extraPatterns": ["("]}}, "invalid regular expression"),
        ({"tetragon": {"allow": [{"eventTypes": ["PROCESS_FOO"]}]}}, "tetragon.allow.0.eventTypes.0"),
        ({"store": {"url": "mysql://x"}}, "store.url"),
        ({"tetragon": {"reconnectInitialSeconds": 5, "reconnectMaxSeconds": 1}}, "reconnectMaxSeconds"),
        (["not", "a", "mapping"], "must be a YAML mapping"),
    ],
)
def test_errors_name_the_key(doc: object, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(doc)
    assert expected in str(e.value)


def test_unreadable_and_invalid_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tetragon: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("name", ["examples/agent-config.yaml", "manifests/agent/configmap.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    root = Path(__file__).resolve().parents[2]
    c = load_config(root / name)
    assert c.hot_symbols.flush_interval_seconds > 0
    if name.startswith("manifests"):
        assert yaml.safe_load((root / name).read_text())["kind"] == "ConfigMap"
        assert c.tetragon.address.startswith("unix://")  # node-local, never a cluster Service


def test_example_config_uses_no_deprecated_name(caplog: pytest.LogCaptureFixture) -> None:
    root = Path(__file__).resolve().parents[2]
    with caplog.at_level("WARNING", logger="stellaops_runtime.contracts.config"):
        c = load_config(root / "examples" / "agent-config.yaml")
    assert caplog.records == []
    assert (
        c.tetragon.timeout_seconds,
        c.hot_symbols.window_seconds,
        c.hot_symbols.flush_interval_seconds,
    ) == (
        5.0,
        60,
        2.0,
    )
