"""When the agent runs the lifecycle observer, and that it loads only where it runs (issue 13).

``lifecycle.enabled: auto`` (the default) watches containerd when its socket
exists, else Docker when its socket exists, else nothing; ``true`` watches
even an absent socket (retried and counted); ``false`` never. An agent told to
watch builds its part but imports the observer, its gRPC or HTTP client and
its Prometheus families only when the task starts (tests/unit/test_agent_imports.py).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stellaops_runtime.agent.lifecycle_part import LifecyclePart, Target, lifecycle_target
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import ConfigError, LifecycleConfig, parse_config
from tests.unit.test_agent_imports import _modules

DOCS = Path(__file__).resolve().parents[2] / "docs"
OBSERVER = (
    "stellaops_runtime.lifecycle.base",
    "stellaops_runtime.lifecycle.observer",
    "stellaops_runtime.lifecycle.docker_observer",
    "stellaops_runtime.lifecycle.containerd_client",
    "stellaops_runtime.lifecycle.metrics",
    "stellaops_runtime.wire.containerd",
    "prometheus_client",
    "grpc",
)


def target(**lifecycle: object) -> Target | None:
    return lifecycle_target(parse_config({"lifecycle": lifecycle}))


def test_which_runtime_is_watched(tmp_path: Path) -> None:
    ctd, dock = tmp_path / "containerd.sock", tmp_path / "docker.sock"
    paths = {"containerdAddress": str(ctd), "dockerAddress": f"unix://{dock}"}
    assert target(**paths) is None  # auto, no socket: off
    assert target(**paths, enabled=True) == Target("containerd", str(ctd))  # asked for: retried
    assert target(**paths, enabled=True, runtime="docker") == Target("docker", f"unix://{dock}")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(dock))
        assert target(**paths) == Target("docker", f"unix://{dock}")
        assert target(**paths, runtime="containerd") is None
        ctd.touch()
        assert target(**paths) == Target("containerd", str(ctd))  # containerd first
        assert target(**paths, enabled=False) is None


def test_an_enabled_observer_loads_only_when_it_starts() -> None:
    config = {
        "tetragon": {"exportFile": "/nonexistent/tetragon.log"},
        "privacy": {"useDefaultRedactionPatterns": False},
        "lifecycle": {"enabled": True, "containerdAddress": "/nonexistent/c.sock"},
    }
    _, built = _modules(config)
    assert "stellaops_runtime.agent.lifecycle_part" in built
    assert sorted(m for m in OBSERVER if m in built) == []


def test_config_is_validated_and_documented() -> None:
    doc = (DOCS / "configuration.md").read_text()
    section = doc[doc.index("## lifecycle") : doc.index("## store")]
    defaults = LifecycleConfig().model_dump(by_alias=True)
    for key, value in defaults.items():
        shown = (
            str(value).lower()
            if isinstance(value, bool)
            else f"{value:g}"
            if isinstance(value, float)
            else value
        )
        assert f"| `{key}` | `{shown}` |" in section, key
    for bad, message in (
        ({"runtime": "crio"}, "lifecycle.runtime"),
        ({"enabled": "sometimes"}, "lifecycle.enabled"),
        ({"reconnectInitialSeconds": 5, "reconnectMaxSeconds": 1}, "reconnectMaxSeconds must be >="),
        ({"containerdNamespace": ""}, "lifecycle.containerdNamespace"),
        # containerd's identifier rule: a CR/LF/NUL would go raw into every call's namespace header
        ({"containerdNamespace": "k8s.io\r\nx-evil: 1"}, "not a containerd namespace"),
        ({"containerdNamespace": "k8s\x00io"}, "lifecycle.containerdNamespace"),
        ({"containerdNamespace": "k8s..io"}, "not a containerd namespace"),
        ({"containerdNamespace": "-k8s"}, "not a containerd namespace"),
        ({"containerdNamespace": "a" * 77}, "at most 76 characters"),
        ({"containerdNamespace": "k8s.\udc80io"}, "lifecycle.containerdNamespace"),
        ({"windowSettleSeconds": -1}, "lifecycle.windowSettleSeconds"),
        ({"socket": "/x"}, "lifecycle.socket: unknown key"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config({"lifecycle": bad})
    for good in ("k8s.io", "moby", "default", "a" * 76, "team_a-1.ns"):
        assert (
            parse_config({"lifecycle": {"containerdNamespace": good}}).lifecycle.containerd_namespace == good
        )


def test_the_agents_lifecycle_metrics_are_documented() -> None:
    config = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    pipeline = Pipeline(config, node_name="n1")
    part = LifecyclePart(config, Target("containerd", "/nonexistent"), node_name="n1", pipeline=pipeline)
    assert pipeline.container_lookup is not None and pipeline.aggregator.runs is part.runs
    doc = (DOCS / "lifecycle.md").read_text()
    for m in part.metrics():
        short = m.name.removeprefix("stellaops_runtime_")
        assert (f"`{short}_total" if m.type == "counter" else f"`{short}`") in doc, short
