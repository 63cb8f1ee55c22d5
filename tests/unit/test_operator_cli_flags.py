"""The operator's command-line flags reach its settings, and bad values are refused."""

from __future__ import annotations

import pytest


def test_timing_flags_reach_the_controller_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from stellaops_runtime.cli.main import build_parser
    from stellaops_runtime.cli.operator import controller_config

    argv = ["operator", "--stale-after-seconds", "45", "--tetragon-unreachable-seconds", "30"]
    argv += ["--rollout-refresh-seconds", "7.5"]
    config = controller_config(build_parser(argv).parse_args(argv))
    assert (config.stale_after_seconds, config.tetragon_unreachable_seconds) == (45.0, 30.0)
    assert config.rollout_refresh_seconds == 7.5
    default = controller_config(build_parser(["operator"]).parse_args(["operator"]))
    assert default.tetragon_unreachable_seconds == 120.0
    assert default.rollout_refresh_seconds == 30.0
    from stellaops_runtime.cli.main import main

    assert main(["operator", "--tetragon-unreachable-seconds", "0"]) == 2
    assert "--tetragon-unreachable-seconds > 0" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "0.5", "3601", "nan"])
def test_a_refresh_interval_out_of_range_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from stellaops_runtime.cli.main import main

    assert main(["operator", "--rollout-refresh-seconds", value]) == 2
    assert "--rollout-refresh-seconds between 1 and 3600" in capsys.readouterr().err


def test_the_registry_grace_period_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from stellaops_runtime.cli.main import build_parser, main
    from stellaops_runtime.cli.operator import controller_config

    argv = ["operator", "--registry-not-in-sync-seconds", "90"]
    assert controller_config(build_parser(argv).parse_args(argv)).registry_not_in_sync_seconds == 90.0
    default = controller_config(build_parser(["operator"]).parse_args(["operator"]))
    assert default.registry_not_in_sync_seconds == 300.0
    from pathlib import Path

    ops = (Path(__file__).resolve().parents[2] / "docs" / "operator-operations.md").read_text()
    assert "| `--registry-not-in-sync-seconds S` | a RuntimeObserver turns Degraded" in ops
    assert "by the node's own clock (default 300;" in ops
    for bad in ("0", "-1", "nan", "inf"):
        assert main(["operator", "--registry-not-in-sync-seconds", bad]) == 2
        assert "--registry-not-in-sync-seconds > 0 (finite)" in capsys.readouterr().err
