"""An agent that cannot see the node's containers: ``auto`` with no runtime socket, or ``false``.

Only the lifecycle part knows the containers of an image that ran without
sending an event (hotsymbols/container_runs.py). With ``lifecycle.enabled:
auto`` and no runtime socket at start the aggregator gets a registry that is
never in sync (``UnseenContainers``): no window holding a container reads
above ActiveTracing, host-only windows are left alone, no lifecycle row or gap
is made up, a WARNING names the paths tried and what to set, and ``/readyz``'s
``lifecycle`` and ``lifecycle_state{state}`` say ``no_runtime_socket``. With
``enabled: false`` (the operator's choice) the windows rest on the containers
that sent events, a WARNING says so, and the state is ``off``
(docs/lifecycle.md, "Without the lifecycle part").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.lifecycle_part import (
    LifecyclePart,
    Target,
    UnseenContainers,
    lifecycle_state,
    make_lifecycle,
    state_metric,
)
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.run_windows import Run
from stellaops_runtime.hotsymbols.window_counts import WindowCounts

DOCS = Path(__file__).resolve().parents[2] / "docs"
IMAGE = "sha256:" + "ab" * 32
NO_ID = "sha256:" + "cd" * 32
W = 1_800_000_000 * 1_000_000_000  # a window start (ns)
DEEP = Posture.EBPF_DEEP.rank


def _config(tmp_path: Path, **lifecycle: Any) -> Any:
    return parse_config(_doc(tmp_path, **lifecycle))


def _doc(tmp_path: Path, **lifecycle: Any) -> dict[str, Any]:
    absent = tmp_path / "absent"
    return {
        "tetragon": {"exportFile": str(tmp_path / "tetragon.log")},
        "symbols": {"enabled": False},
        "attribution": {"enabled": False},
        "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}", "spoolPath": str(tmp_path / "spool")},
        "lifecycle": {
            "containerdAddress": f"{absent}/containerd.sock",
            "dockerAddress": f"unix://{absent}/docker.sock",
            "criAddresses": [f"{absent}/crio.sock"],
            **lifecycle,
        },
    }


def _state(m: Any) -> dict[str, float]:
    return {s.labels["state"]: s.value for s in m.samples}


def _drain(runs: Any) -> dict[str, tuple[int, Any, Any]]:
    counts = WindowCounts(60)
    counts.note(IMAGE, "n1", W, DEEP, "tetragon-grpc", str, "c" * 64)  # a container's user stacks
    counts.note("host:n1", "n1", W, DEEP, "tetragon-grpc", str, "")  # host processes only
    counts.note(NO_ID, "n1", W, DEEP, "tetragon-grpc", str, "")  # a pod's event naming no container id
    rows = counts.drain("tetragon", runs)
    return {r.image_digest: (r.event_count, r.posture, r.evidenced) for r in rows}


def test_auto_without_a_runtime_socket_caps_every_container_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path)
    pipeline = Pipeline(config, node_name="n1")
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.lifecycle_part"):
        assert make_lifecycle(config, node_name="n1", pipeline=pipeline) is None
    runs = pipeline.aggregator.runs
    assert isinstance(runs, UnseenContainers) and not runs.containers.known
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for said in (
        "no runtime socket",
        f"containerdAddress {tmp_path}/absent/containerd.sock",
        "dockerAddress unix://",
        "criAddresses",
        "ActiveTracing",
        "lifecycle.enabled: false",
    ):
        assert said in warning, (said, warning)
    rows = _drain(runs)
    assert rows == {
        IMAGE: (1, Posture.EBPF_DEEP, Posture.ACTIVE_TRACING),  # shown EbpfDeep, evidenced no higher
        NO_ID: (1, Posture.EBPF_DEEP, Posture.ACTIVE_TRACING),  # a container all the same
        "host:n1": (1, Posture.EBPF_DEEP, Posture.EBPF_DEEP),  # no container: nothing silent to miss
    }
    assert runs.drain([], "tetragon") == []  # no lifecycle row, no gap: nothing was sampled
    assert lifecycle_state(None, pipeline) == "no_runtime_socket"
    assert _state(state_metric(None, pipeline)) == {
        "in_sync": 0, "not_in_sync": 0, "no_runtime_socket": 1, "off": 0,
    }  # fmt: skip


def test_enabled_false_leaves_the_windows_on_their_events_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path, enabled=False)
    pipeline = Pipeline(config, node_name="n1")
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.lifecycle_part"):
        assert make_lifecycle(config, node_name="n1", pipeline=pipeline) is None
    assert pipeline.aggregator.runs is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "lifecycle.enabled: false" in warning and "only on the containers that sent events" in warning
    assert _drain(None)[IMAGE] == (1, Posture.EBPF_DEEP, Posture.EBPF_DEEP)
    assert lifecycle_state(None, pipeline) == "off"
    assert _state(state_metric(None, pipeline))["off"] == 1


def test_a_lifecycle_part_is_not_in_sync_until_its_registry_is(tmp_path: Path) -> None:
    config = _config(tmp_path, enabled=True)
    pipeline = Pipeline(config, node_name="n1")
    part = make_lifecycle(config, node_name="n1", pipeline=pipeline)
    assert isinstance(part, LifecyclePart) and part.target == Target(
        "containerd", f"{tmp_path}/absent/containerd.sock"
    )
    assert lifecycle_state(part, pipeline) == "not_in_sync"  # an absent socket, retried
    part.runs.tick(W, True, [Run(IMAGE, W, 0, True, "c" * 64)], True)
    assert lifecycle_state(part, pipeline) == "in_sync"
    assert _state(state_metric(part, pipeline))["in_sync"] == 1


def test_readyz_and_metrics_name_the_state_and_the_docs_list_them(tmp_path: Path) -> None:
    agent = Agent(_config(tmp_path), node_name="n1")
    _, detail = agent.readiness()
    assert detail["lifecycle"] == "no_runtime_socket"
    from stellaops_runtime.agent.metrics import AgentCollector

    (m,) = [m for m in AgentCollector(agent).collect() if m.name == "stellaops_runtime_lifecycle_state"]
    assert _state(m)["no_runtime_socket"] == 1
    assert Agent(_config(tmp_path, enabled=False), node_name="n1").readiness()[1]["lifecycle"] == "off"
    doc = (DOCS / "lifecycle.md").read_text()
    assert "`lifecycle_state{state}`" in doc and "`lifecycle`" in doc
    ops = (DOCS / "operations.md").read_text()
    for state in ("in_sync", "not_in_sync", "no_runtime_socket", "off"):
        assert f"`{state}`" in doc and f"`{state}`" in ops, state
    assert "`lifecycle_state{state}`" in ops and "`/readyz`'s `lifecycle`" in ops


def test_the_observation_node_carries_the_state_as_containers_known(tmp_path: Path) -> None:
    from stellaops_runtime.agent.observation_status import CONTAINERS_CONDITION, build_status
    from tests.unit.test_working_source import UP, caps

    def known(state: str | None, existing: Any = None, now: str = "t1") -> Any:
        status = build_status(
            capabilities=caps(), tetragon=UP, policies=[], existing_conditions=existing, now=now,
            containers=state,
        )  # fmt: skip
        return {c["type"]: c for c in status["conditions"]}.get(CONTAINERS_CONDITION), status["conditions"]

    for state, want in (
        ("in_sync", ("True", "RegistryInSync")),
        ("not_in_sync", ("False", "RegistryNotInSync")),
        ("no_runtime_socket", ("False", "NoRuntimeSocket")),
        ("off", ("False", "LifecycleDisabled")),
    ):
        cond, _ = known(state)
        assert (cond["status"], cond["reason"]) == want, state
    assert known(None)[0] is None
    first = known("no_runtime_socket")[1]
    assert known("no_runtime_socket", first, "t2")[1] == first  # unchanged: nothing to write
    on = {"enabled": True, "kubeconfig": str(tmp_path / "kubeconfig")}
    agent = Agent(parse_config({**_doc(tmp_path), "observationNode": on}), node_name="n1")
    assert agent.node_status is not None and agent.node_status.containers is not None
    assert agent.node_status.containers() == "no_runtime_socket"
    for doc in ("lifecycle.md", "operator.md"):
        text = (DOCS / doc).read_text()
        for said in ("`ContainersKnown`", "`RegistryInSync`", "`RegistryNotInSync`", "`NoRuntimeSocket`",
                     "`LifecycleDisabled`"):  # fmt: skip
            assert said in text, (doc, said)


def test_events_naming_no_container_id_do_not_exempt_a_container_image(tmp_path: Path) -> None:
    """Only ``host:<node>`` windows are host processes'. A pod's events without a container id
    (Tetragon's pod block with an empty ``container.id``) are a container's: with the registry in
    sync, a running container of the image is not known to be the one that sent them, so it counts
    as silent (Passive; None here, the day mark of hotsymbols/day_calls.py: it showed no call that
    day while the events without an id did); the host's window stays as its events showed."""
    config = _config(tmp_path, enabled=True)
    pipeline = Pipeline(config, node_name="n1")
    part = make_lifecycle(config, node_name="n1", pipeline=pipeline)
    assert isinstance(part, LifecyclePart)
    part.runs.tick(W + 1, True, [Run(NO_ID, W - 10**9, 0, True, "e" * 64)], True)
    rows = _drain(part.runs)
    assert rows[NO_ID] == (1, Posture.EBPF_DEEP, Posture.NONE)
    assert rows["host:n1"] == (1, Posture.EBPF_DEEP, Posture.EBPF_DEEP)
