"""``aggregationWindowSeconds`` must divide a day: a window straddling midnight is refused.

Windows start at multiples of the window length. With one that does not divide 86,400 s (5000 s,
say), one window a day starts before midnight and ends after it, and its calls and gaps were dated
the day before: a gap at 00:10 dated the previous day left the day after it "watched, no gap"
(last session's midnight defect, test_evidence_midnight_gap.py). The agent's config
(``hotSymbols.aggregationWindowSeconds``, and its deprecated ``windowSeconds``) and the
RuntimeObserver's ``spec.hotSymbols.windowSeconds`` (the operator's check beside the CRD's CEL rule,
test_crds.py) now refuse it, naming the key; the agent started with it exits 2 before it runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.contracts.config import ConfigError, parse_config
from stellaops_runtime.contracts.crds import SpecError, parse_observer_spec

ROOT = Path(__file__).resolve().parents[2]
DIVISORS = [1, 2, 60, 90, 300, 600, 900, 1800, 3600, 7200, 43_200, 86_400]
OTHERS = [7, 70, 5000, 7000, 50_000, 86_399]


@pytest.mark.parametrize("key", ["aggregationWindowSeconds", "windowSeconds"])
def test_the_agent_config_takes_divisors_of_a_day_only(key: str) -> None:
    for seconds in DIVISORS:
        assert parse_config({"hotSymbols": {key: seconds}}).hot_symbols.window_seconds == seconds
    for given in ("1m", "5m", "1h", "24h"):
        parse_config({"hotSymbols": {key: given}})
    for given in [*OTHERS, "5000s", "1h23m20s", "7s"]:
        with pytest.raises(ConfigError) as e:
            parse_config({"hotSymbols": {key: given}})
        assert "hotSymbols.aggregationWindowSeconds" in str(e.value)
        assert "does not divide a day (86400 s)" in str(e.value), str(e.value)


def test_the_observer_spec_takes_divisors_of_a_day_only() -> None:
    store = {"secretRef": {"name": "s", "key": "k"}}
    for seconds in DIVISORS:
        spec = parse_observer_spec({"hotSymbols": {"windowSeconds": seconds}, "store": store})
        assert spec.hot_symbols.window_seconds == seconds
    for seconds in OTHERS:
        with pytest.raises(SpecError) as e:
            parse_observer_spec({"hotSymbols": {"windowSeconds": seconds}, "store": store})
        assert e.value.reason == "InvalidSpec" and "spec.hotSymbols.windowSeconds" in str(e.value)


def test_the_agent_started_with_such_a_window_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"hotSymbols:\n  aggregationWindowSeconds: 5000\nstore:\n  url: sqlite:///{tmp_path}/h.db\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "agent", "--config", str(config),
         "--exit-when-idle", "1"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "aggregationWindowSeconds" in r.stderr and "does not divide a day" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
