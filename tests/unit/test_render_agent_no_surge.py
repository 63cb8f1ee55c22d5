"""The agent DaemonSet never runs two agents of a node at once during a rollout.

docs/operations.md ("One agent per node") says the operator's DaemonSet
replaces a node's agent with ``maxUnavailable: 1`` and no surge, so a new
agent never waits for the node lock of the old one (a waiting agent serves
no probe, and a surged rollout would stop there). apps/v1 reads an absent
``maxSurge`` as 0; a rendered ``maxSurge`` of anything but 0 would start the
new pod beside the old one.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.crds import parse_observer_spec
from stellaops_runtime.controller.render_agent import render_agent_objects
from tests.unit.test_render_agent import BASE, UID


@pytest.mark.parametrize("source", ["tetragon", "native"])
def test_the_rendered_daemonset_rolls_one_node_at_a_time_without_a_surge(source: str) -> None:
    objs = render_agent_objects(
        name="default", uid=UID, namespace="ns", spec=parse_observer_spec(BASE), source=source
    )
    (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
    strategy = ds["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}, strategy
