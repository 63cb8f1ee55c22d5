"""The real ``stella-runtime agent`` CLI with the seed design's ConfigMap and with bad configs.

The seed's ConfigMap (tests/fixtures/config/seed-configmap.yaml) must start
the agent as it is: the store comes from ``$STELLA_RUNTIME_STORE`` (the seed
has no store section) and the metrics port from ``--metrics-port`` (the seed's
default 8080 may be taken on a test machine). Its Tetragon address names a
cluster Service that does not resolve here, so the agent runs, warns about
the Service, and stays not ready until Tetragon is reachable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h

pytestmark = pytest.mark.e2e

SEED_CONFIGMAP = h.ROOT / "tests" / "fixtures" / "config" / "seed-configmap.yaml"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STELLA_RUNTIME_STORE", "NODE_NAME")}
    return dict(env, PYTHONUNBUFFERED="1", **extra)


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=h.ROOT,
        env=env or _env(),
    )


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``stella-runtime agent ARGS`` in the background, stdout and stderr together."""
    return subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "agent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=h.ROOT,
        env=env,
    )


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


async def test_the_seed_configmap_starts_the_agent(tmp_path: Path) -> None:
    db = tmp_path / "hs.db"
    port = h.free_port()
    args = ["--config", str(SEED_CONFIGMAP), "--metrics-port", str(port), "--node-name", "seed-node"]
    proc = _start(*args, env=_env(STELLA_RUNTIME_STORE=f"sqlite:///{db}"))
    try:
        await h.wait_for(lambda: _get(port, "/healthz")[0] == 200, what="/healthz", timeout=60)
        # The store opens (and migrates) in the background, event intake never waits for it.
        await h.wait_for(lambda: '"store_open": true' in _get(port, "/readyz")[1], what="store open")
        status, body = _get(port, "/readyz")
        ready = json.loads(body)
        # Past config loading: the store (from the environment) is open and migrated; Tetragon at
        # the seed's Service address is not reachable here, so the agent is not ready and retries.
        assert status == 503
        assert ready["store_open"] is True and ready["source_connected"] is False
        assert ready["source"] == "tetragon-grpc"
        samples = h.scrape(port)
        assert h.metric(samples, "tetragon_events_total") == 0
        assert h.metric(samples, "tetragon_hotsymbols_flushed") == 0
        assert db.is_file()
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0, out
    assert "tetragon.address 'tetragon.kube-system.svc:54321' names a Kubernetes Service" in out
    assert "invalid configuration" not in out and "deprecated" not in out
    assert f"metrics and health on http://0.0.0.0:{port}" in out  # the seed's address, our port


def test_the_seed_configmap_without_the_override_uses_port_8080() -> None:
    from stellaops_runtime.contracts.config import load_config

    assert load_config(SEED_CONFIGMAP).metrics.port == 8080  # the seed's ":8080/metrics"


async def _replay_and_run(cfg: dict[str, Any], tmp_path: Path, idle: str) -> subprocess.CompletedProcess[str]:
    """Run the agent with ``--exit-when-idle`` against a replay server playing 20 events."""
    server = ReplayServer(h.stream_events()[:20])
    cfg["tetragon"]["address"] = await server.start("127.0.0.1:0")
    try:
        path = _write(tmp_path, cfg)
        return await asyncio.to_thread(_run, "agent", "--config", str(path), "--exit-when-idle", idle)
    finally:
        await server.stop(grace=0)


async def test_deprecated_names_warn_once_each_and_still_apply(tmp_path: Path) -> None:
    cfg = {
        "tetragon": {"timeoutSeconds": "2s"},
        "hotSymbols": {"windowSeconds": 60, "flushIntervalSeconds": "100ms"},
        "privacy": {"defaultPatterns": True, "symbolIdOnly": True},
        "store": {"url": f"sqlite:///{tmp_path}/hs.db"},
        "metrics": {"address": "127.0.0.1", "port": 0},
    }
    r = await _replay_and_run(cfg, tmp_path, "1")
    assert r.returncode == 0, r.stderr
    for old, new in [
        ("tetragon.timeoutSeconds", "tetragon.connectionTimeout"),
        ("hotSymbols.windowSeconds", "hotSymbols.aggregationWindowSeconds"),
        ("privacy.defaultPatterns", "privacy.useDefaultRedactionPatterns"),
        ("privacy.symbolIdOnly", "privacy.symbolIdOnlyMode"),
    ]:
        assert r.stderr.count(f"config key {old} is deprecated, use {new}") == 1, r.stderr
    assert r.stderr.count("is deprecated") == 4
    assert "agent stopped: 20 events received" in r.stderr


def test_old_and_new_name_together_is_refused(tmp_path: Path) -> None:
    cfg = _write(tmp_path, {"hotSymbols": {"windowSeconds": 60, "aggregationWindowSeconds": 120}})
    r = _run("agent", "--config", str(cfg))
    assert r.returncode == 2
    assert r.stderr == (
        "stella-runtime agent: invalid configuration:\n"
        "  hotSymbols: hotSymbols.windowSeconds is the deprecated name of "
        "hotSymbols.aggregationWindowSeconds: give only hotSymbols.aggregationWindowSeconds\n"
    )


def test_a_bad_duration_is_refused_naming_the_key(tmp_path: Path) -> None:
    cfg = _write(tmp_path, {"tetragon": {"connectionTimeout": "30 seconds"}})
    r = _run("agent", "--config", str(cfg))
    assert r.returncode == 2
    assert r.stderr == (
        "stella-runtime agent: invalid configuration:\n"
        "  tetragon.connectionTimeout: expected a duration (e.g. 30s, 1m, 1h30m, 500ms) or seconds, "
        "got '30 seconds'\n"
    )


def test_a_bad_metrics_port_override_is_refused(tmp_path: Path) -> None:
    r = _run("agent", "--config", str(SEED_CONFIGMAP), "--metrics-port", "70000")
    assert r.returncode == 2
    assert "metrics.port: Input should be less than or equal to 65535" in r.stderr


def test_a_sqlite_store_in_a_missing_directory_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "there"
    url = f"sqlite:///{missing}/hs.db"
    r = _run("agent", "--config", str(SEED_CONFIGMAP), env=_env(STELLA_RUNTIME_STORE=url), timeout=30)
    assert r.returncode == 2
    assert r.stderr == (
        f"stella-runtime agent: store.url {url}: directory {missing} does not exist "
        "(create it, or set store.createDirectories: true to let the agent create it)\n"
    )
    assert not (tmp_path / "not").exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_store_exits_2_with_one_line(url: str) -> None:
    """Every connection to it is a new empty database: the agent would hold its counts for ever."""
    r = _run("agent", "--config", str(SEED_CONFIGMAP), env=_env(STELLA_RUNTIME_STORE=url), timeout=30)
    assert r.returncode == 2
    assert r.stderr == (
        f"stella-runtime agent: store.url {url}: an in-memory SQLite database is new and empty on every "
        "connection, so nothing the agent writes would be kept; give a file (sqlite:///PATH)\n"
    )


async def test_create_directories_lets_the_agent_make_the_sqlite_directory(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "hs.db"
    cfg = {
        "tetragon": {"connectionTimeout": "2s"},
        "store": {"url": f"sqlite:///{db}", "createDirectories": True},
        "metrics": {"address": "127.0.0.1", "port": 0},
        # The idle exit waits for a flush after the quiet moment: not the default 10 s interval.
        "hotSymbols": {"flushIntervalSeconds": "100ms"},
    }
    r = await _replay_and_run(cfg, tmp_path, "1")
    assert r.returncode == 0, r.stderr
    assert db.is_file()
    assert f"hot-symbol store ready: sqlite:///{db}" in r.stderr
