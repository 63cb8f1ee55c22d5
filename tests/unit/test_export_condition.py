"""agent/observation_status.py: the ObservationNode's ``ExportPositionRecorded`` condition.

The real path (a real agent, its watch record's directory gone, the ObservationNode in the
Kubernetes API emulator) is tests/e2e/test_export_record_condition.py. Here: the condition keeps
its transition time while it does not change (a poll that changes nothing writes nothing), and
an agent that no longer keeps an export position (another source, no ``store.spoolPath``) drops
the condition an earlier agent wrote instead of leaving it stale.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stellaops_runtime.agent.observation_status import EXPORT_CONDITION, build_status, export_position
from tests.unit.test_working_source import UP, caps


def _status(existing: list[dict[str, Any]] | None, pos: tuple[bool, str] | None, now: str) -> dict[str, Any]:
    return build_status(
        capabilities=caps(),
        tetragon=UP,
        policies=[],
        existing_conditions=existing,
        now=now,
        export_position=pos,
    )


def _record(*, held: int, positions: object = object(), path: str = "/var/lib/x.spool.alive") -> Any:
    export = SimpleNamespace(positions=positions, held=held)
    return SimpleNamespace(enabled=bool(path), path=path, export=export, unrecorded=held > 0)


def test_the_condition_follows_the_held_drains_and_keeps_its_transition_time() -> None:
    recorded = export_position(_record(held=0))
    held = export_position(_record(held=3))
    assert recorded is not None and recorded[0] is True
    assert held is not None and held[0] is False and "/var/lib/x.spool.alive" in held[1]
    assert export_position(_record(held=7)) == held  # no count in it: no write per drain
    first = _status(None, recorded, "t1")["conditions"]
    again = _status(first, recorded, "t2")["conditions"]
    assert again == first  # nothing changed: nothing to write
    down = {c["type"]: c for c in _status(again, held, "t3")["conditions"]}[EXPORT_CONDITION]
    assert (down["status"], down["reason"], down["lastTransitionTime"]) == (
        "False",
        "WatchRecordUnwritable",
        "t3",
    )


def test_no_export_position_drops_the_condition_and_keeps_the_others() -> None:
    assert export_position(None) is None
    assert export_position(_record(held=0, positions=None)) is None  # the gRPC source
    assert export_position(_record(held=0, path="")) is None  # no store.spoolPath: no record
    before = _status(None, (False, "held"), "t1")["conditions"] + [{"type": "Custom", "status": "True"}]
    after = _status(before, None, "t2")["conditions"]
    assert [c["type"] for c in after] == ["Ready", "EventSource", "Custom"]
