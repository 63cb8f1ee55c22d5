"""The seed design's ConfigMap (runtime-agents-architecture.md, "Configuration") is a valid config as written.

tests/fixtures/config/seed-configmap.yaml is the seed's text, byte for byte
below its comment header; every key must load and mean what the seed says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stellaops_runtime.contracts.config import load_config, parse_config
from stellaops_runtime.sources.tetragon_grpc import service_address_warning

ROOT = Path(__file__).resolve().parents[2]
SEED_CONFIGMAP = ROOT / "tests" / "fixtures" / "config" / "seed-configmap.yaml"
SEED_DOC = Path("/work/shared/seed/000_203bc06a66e25d3a.txt")


def _fixture_body() -> str:
    """The fixture without its comment header: the seed's text."""
    lines = SEED_CONFIGMAP.read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def test_fixture_is_the_seed_text_verbatim() -> None:
    if not SEED_DOC.is_file():
        pytest.skip("the seed document is not on this machine")
    seed = SEED_DOC.read_text(encoding="utf-8")
    section = seed[seed.index("\nConfiguration\n") : seed.index("\nMonitoring\n")]
    assert _fixture_body().rstrip("\n") in section
    assert _fixture_body().startswith("apiVersion: v1\nkind: ConfigMap\n")
    assert _fixture_body().rstrip("\n").endswith("        - stella-ops-workloads\n        - default")


def test_seed_configmap_loads_with_the_meaning_the_seed_gives(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        c = load_config(SEED_CONFIGMAP)
    assert caplog.records == []  # seed names only: nothing deprecated
    # tetragon.address: the gRPC address of Tetragon, as given (a Service: the agent warns at start-up)
    assert c.tetragon.address == "tetragon.kube-system.svc:54321"
    assert service_address_warning(c.tetragon.address) is not None
    # tetragon.connectionTimeout: 30s -> each connection attempt waits up to 30 seconds
    assert c.tetragon.timeout_seconds == 30.0
    # hotSymbols: 60 s aggregation windows, observations below confidence 0.2 dropped, flush every 30 s
    assert c.hot_symbols.window_seconds == 60
    assert c.hot_symbols.min_confidence_threshold == 0.2
    assert c.hot_symbols.flush_interval_seconds == 30.0
    # privacy
    assert c.privacy.redact_arguments is True
    assert c.privacy.default_patterns is True
    assert c.privacy.symbol_id_only is False
    assert c.privacy.allowed_namespaces == ["stella-ops-workloads", "default"]
    # not in the seed's ConfigMap: defaults, metrics on :8080 as its "Monitoring" section says
    assert (c.metrics.address, c.metrics.port) == ("0.0.0.0", 8080)
    assert c.store.create_directories is False


def test_seed_configmap_parses_the_same_as_a_document_and_as_its_inner_config() -> None:
    doc = yaml.safe_load(SEED_CONFIGMAP.read_text(encoding="utf-8"))
    inner = yaml.safe_load(doc["data"]["config.yaml"])
    assert inner["tetragon"]["connectionTimeout"] == "30s"  # a string: YAML has no durations
    assert parse_config(doc) == parse_config(inner) == load_config(SEED_CONFIGMAP)


def test_seed_config_round_trips_through_its_documented_names() -> None:
    c = load_config(SEED_CONFIGMAP)
    dumped = c.model_dump(by_alias=True)
    assert dumped["tetragon"]["connectionTimeout"] == 30.0
    assert dumped["hotSymbols"]["aggregationWindowSeconds"] == 60
    assert dumped["privacy"]["useDefaultRedactionPatterns"] is True
    assert dumped["privacy"]["symbolIdOnlyMode"] is False
    assert parse_config(dumped) == c
