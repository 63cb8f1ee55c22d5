"""Durations (Go/Kubernetes strings or seconds) and the deprecated key names of the agent config."""

from __future__ import annotations

import logging

import pytest

from stellaops_runtime.contracts.config import ConfigError, parse_config, parse_duration

LOGGER = "stellaops_runtime.contracts.config"

# Every duration-valued key, as (section, key, python attribute).
DURATION_KEYS = [
    ("tetragon", "connectionTimeout", "timeout_seconds"),
    ("tetragon", "reconnectInitialSeconds", "reconnect_initial_seconds"),
    ("tetragon", "reconnectMaxSeconds", "reconnect_max_seconds"),
    ("hotSymbols", "aggregationWindowSeconds", "window_seconds"),
    ("hotSymbols", "flushIntervalSeconds", "flush_interval_seconds"),
    ("observationNode", "heartbeatSeconds", "heartbeat_seconds"),
]
ATTR_SECTION = {"tetragon": "tetragon", "hotSymbols": "hot_symbols", "observationNode": "observation_node"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("2h", 7200.0),
        ("1m30s", 90.0),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        (".5s", 0.5),
        ("30", 30.0),
        (" 45s ", 45.0),
        (30, 30.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    "garbage", ["", "s", "30 s", "1d", "-5s", "+5s", "1h-30m", "abc", "5sec", "1e3s", True, None]
)
def test_parse_duration_rejects_garbage(garbage: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(garbage)


@pytest.mark.parametrize(("section", "key", "attr"), DURATION_KEYS)
def test_every_duration_key_takes_a_string_or_seconds(section: str, key: str, attr: str) -> None:
    def value(v: object) -> object:
        doc: dict[str, dict[str, object]] = {section: {key: v}}
        if key == "reconnectInitialSeconds":  # must stay <= reconnectMaxSeconds (default 30)
            doc[section]["reconnectMaxSeconds"] = "5m"
        return getattr(getattr(parse_config(doc), ATTR_SECTION[section]), attr)

    assert value("1m") == 60
    assert value(45) == 45
    assert value("2m30s") == 150


@pytest.mark.parametrize(("section", "key", "attr"), DURATION_KEYS)
def test_every_duration_key_rejects_garbage_naming_the_key(section: str, key: str, attr: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({section: {key: "soon"}})
    assert str(e.value) == (
        f"invalid configuration:\n  {section}.{key}: "
        "expected a duration (e.g. 30s, 1m, 1h30m, 500ms) or seconds, got 'soon'"
    )


def test_window_must_be_whole_seconds_and_limits_still_apply() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"hotSymbols": {"aggregationWindowSeconds": "1500ms"}})
    assert "hotSymbols.aggregationWindowSeconds: must be a whole number of seconds, got '1500ms'" in str(
        e.value
    )
    with pytest.raises(
        ConfigError, match=r"tetragon\.connectionTimeout: Input should be less than or equal to 300"
    ):
        parse_config({"tetragon": {"connectionTimeout": "6m"}})
    with pytest.raises(
        ConfigError, match=r"hotSymbols\.flushIntervalSeconds: Input should be greater than 0"
    ):
        parse_config({"hotSymbols": {"flushIntervalSeconds": "0s"}})
    assert (
        parse_config({"hotSymbols": {"aggregationWindowSeconds": "24h"}}).hot_symbols.window_seconds == 86_400
    )
    with pytest.raises(ConfigError, match="aggregationWindowSeconds"):
        parse_config({"hotSymbols": {"aggregationWindowSeconds": "24h1s"}})


DEPRECATED = [
    ("tetragon", "timeoutSeconds", "connectionTimeout", 7, "timeout_seconds", 7.0),
    ("hotSymbols", "windowSeconds", "aggregationWindowSeconds", 120, "window_seconds", 120),
    ("privacy", "defaultPatterns", "useDefaultRedactionPatterns", False, "default_patterns", False),
    ("privacy", "symbolIdOnly", "symbolIdOnlyMode", True, "symbol_id_only", True),
]
SECTION_ATTR = {"tetragon": "tetragon", "hotSymbols": "hot_symbols", "privacy": "privacy"}


@pytest.mark.parametrize(("section", "old", "new", "value", "attr", "expected"), DEPRECATED)
def test_deprecated_name_still_works_and_warns_once(
    caplog: pytest.LogCaptureFixture,
    section: str,
    old: str,
    new: str,
    value: object,
    attr: str,
    expected: object,
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        c = parse_config({section: {old: value}})
    assert getattr(getattr(c, SECTION_ATTR[section]), attr) == expected
    assert [r.getMessage() for r in caplog.records] == [
        f"config key {section}.{old} is deprecated, use {section}.{new}"
    ]
    assert c == parse_config({section: {new: value}})


def test_one_warning_per_deprecated_key_in_one_load(caplog: pytest.LogCaptureFixture) -> None:
    doc = {
        "tetragon": {"timeoutSeconds": "10s"},
        "hotSymbols": {"windowSeconds": 60},
        "privacy": {"defaultPatterns": True, "symbolIdOnly": False},
    }
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        c = parse_config(doc)
    assert sorted(r.getMessage() for r in caplog.records) == [
        "config key hotSymbols.windowSeconds is deprecated, use hotSymbols.aggregationWindowSeconds",
        "config key privacy.defaultPatterns is deprecated, use privacy.useDefaultRedactionPatterns",
        "config key privacy.symbolIdOnly is deprecated, use privacy.symbolIdOnlyMode",
        "config key tetragon.timeoutSeconds is deprecated, use tetragon.connectionTimeout",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert c.tetragon.timeout_seconds == 10.0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):  # the dump uses the new names: no warning again
        assert parse_config(c.model_dump(by_alias=True)) == c
    assert caplog.records == []


@pytest.mark.parametrize(("section", "old", "new", "value", "attr", "expected"), DEPRECATED)
def test_old_and_new_name_together_is_an_error(
    section: str, old: str, new: str, value: object, attr: str, expected: object
) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({section: {old: value, new: value}})
    assert str(e.value) == (
        f"invalid configuration:\n  {section}: {section}.{old} is the deprecated name of "
        f"{section}.{new}: give only {section}.{new}"
    )


def test_python_names_and_deprecated_aliases_build_models_directly() -> None:
    from stellaops_runtime.contracts.config import PrivacyConfig, TetragonConfig

    assert TetragonConfig(timeoutSeconds=1).timeout_seconds == 1.0  # type: ignore[call-arg]
    assert TetragonConfig(timeout_seconds="2s").timeout_seconds == 2.0  # type: ignore[call-arg]
    assert PrivacyConfig(symbol_id_only=True).symbol_id_only is True  # type: ignore[call-arg]
