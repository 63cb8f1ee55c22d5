"""The ObservationNode CRD says which conditions the agent writes, and with which reasons.

``kubectl explain observationnode.status.conditions.type`` is what a user
reads to learn what a node's conditions mean. It said "Ready, Progressing,
Degraded or Stalled" (the policies' and observers' condition types), none of
which but Ready an agent writes, and nothing of EventSource (added this
session), ExportPositionRecorded or ContainersKnown. The texts are checked
against the constants the agent writes them with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stellaops_runtime.agent.observation_status import (
    CONTAINERS_CONDITION,
    CONTAINERS_STATES,
    EVENT_SOURCE_CONDITION,
    EXPORT_CONDITION,
)
from tests.crd_schema import load_crd

CRD = Path(__file__).resolve().parents[2] / "manifests" / "crds" / "observationnodes.yaml"


def _conditions() -> dict[str, Any]:
    crd = load_crd(CRD)
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]


def test_the_condition_type_names_every_condition_the_agent_writes_and_no_other() -> None:
    conditions = _conditions()
    text = conditions["description"] + " " + conditions["items"]["properties"]["type"]["description"]
    for kind in ("Ready", EVENT_SOURCE_CONDITION, EXPORT_CONDITION, CONTAINERS_CONDITION):
        assert kind in text, (kind, text)
    for kind in ("Progressing", "Degraded", "Stalled"):  # the policies' and observers' types
        assert kind not in text, (kind, text)


def test_the_reasons_are_the_ones_the_agent_writes() -> None:
    reason = _conditions()["items"]["properties"]["reason"]["description"]
    written = {
        "TetragonReachable",
        "TetragonUnreachable",
        "SourceWorking",
        "NoEventSource",
        "Recorded",
        "WatchRecordUnwritable",
        *(r for _, r, _ in CONTAINERS_STATES.values()),
    }
    for r in written:
        assert r in reason, (r, reason)
