"""The OOM report of Docker and of the CRI, before or after the container's ``die``.

containerd's runc shim can deliver a task's OOM after its exit on cgroup v2
(containerd#12714); Docker then sends ``die`` with ``OOMKilled`` false and an
``oom`` event later. These tests drive the observer's event handling with an
Engine whose inspect answers change as Docker's would, and check that the
``die`` says what Docker said when it came and that the stored record ends
where Docker's inspect ends.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.docker_observer import DockerObserver

CID = "c" * 64


class _Engine:
    """Answers inspect calls from ``state``, which the test changes between events."""

    address = "unix:///fake.sock"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"Status": "running", "Pid": 4242, "OOMKilled": False}

    async def get_or_none(self, path: str) -> Any:
        if path == f"/containers/{CID}/json":
            return {"Id": CID, "Image": "", "Config": {"Image": "shop/cart:1"}, "State": dict(self.state)}
        return None


def _line(action: str, **attrs: str) -> bytes:
    msg = {"Type": "container", "Action": action, "Actor": {"ID": CID, "Attributes": attrs}}
    return json.dumps(msg).encode()


def _run(engine: _Engine, steps: list[tuple[dict[str, Any], bytes]]) -> tuple[DockerObserver, list[Any]]:
    obs = DockerObserver(engine)  # type: ignore[arg-type]
    events: list[Any] = []

    async def go() -> None:
        for state, line in steps:
            engine.state.update(state)
            events.extend(await obs._handle(line))

    asyncio.run(go())
    return obs, events


_EXITED = {"Status": "exited", "Pid": 0, "ExitCode": 137, "FinishedAt": "2026-12-03T10:00:00.5Z"}


def test_an_oom_before_the_die_is_carried_by_the_die() -> None:
    obs, events = _run(
        _Engine(),
        [
            ({}, _line("start")),
            ({"OOMKilled": True}, _line("oom")),
            (_EXITED, _line("die", exitCode="137")),
        ],
    )
    die = [e for e in events if e.event_type == T.DIE]
    assert len(die) == 1 and die[0].oom_killed and die[0].exit_code == 137
    assert obs.registry.get("", CID).oom_killed


def test_a_late_oom_marks_the_stopped_record_and_emits_no_second_die() -> None:
    obs, events = _run(
        _Engine(),
        [
            ({}, _line("start")),
            (_EXITED, _line("die", exitCode="137")),  # Docker has no OOM yet
            ({"OOMKilled": True}, _line("oom")),
        ],
    )
    die = [e for e in events if e.event_type == T.DIE]
    assert len(die) == 1 and not die[0].oom_killed and die[0].exit_code == 137
    rec = obs.registry.get("", CID)
    assert rec.oom_killed and rec.status == "stopped" and rec.exit_code == 137
    assert obs.registry.cgroup_ids() == {}  # the stopped container names no cgroup again


def test_a_sigkill_is_no_oom() -> None:
    obs, events = _run(_Engine(), [({}, _line("start")), (_EXITED, _line("die", exitCode="137"))])
    assert [e.oom_killed for e in events if e.event_type == T.DIE] == [False]
    assert not obs.registry.get("", CID).oom_killed


def test_the_cri_observer_looks_again_at_a_sigkilled_container_for_a_while() -> None:
    """The CRI relist keeps an exited container's record unless its status may still turn OOMKilled."""
    from datetime import UTC, datetime, timedelta

    from stellaops_runtime.lifecycle.cri_records import LATE_OOM_SECONDS
    from stellaops_runtime.lifecycle.cri_records import late_oom_possible as _late_oom_possible
    from stellaops_runtime.lifecycle.registry import ContainerRecord

    now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    just = now - timedelta(seconds=1)

    def rec(**kw: Any) -> ContainerRecord:
        base: dict[str, Any] = {"status": "stopped", "exit_code": 137, "stopped_at": just}
        return ContainerRecord(container_id=CID, namespace="", **{**base, **kw})

    assert _late_oom_possible(rec(), now)
    assert not _late_oom_possible(rec(oom_killed=True), now)  # already said
    assert not _late_oom_possible(rec(exit_code=3), now)  # not a SIGKILL
    assert not _late_oom_possible(rec(status="running"), now)
    assert not _late_oom_possible(rec(stopped_at=None), now)
    assert not _late_oom_possible(rec(stopped_at=now - timedelta(seconds=LATE_OOM_SECONDS)), now)
