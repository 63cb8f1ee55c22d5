"""When an object of ours being deleted has been held too long, and what its message promises (pure).

A finalizer that never goes kept the owner Progressing ``WaitingForDeletion`` for ever; past the
operator's stale bound (``--stale-after-seconds``) it is Degraded (the kopf run is
tests/integration/test_owned_terminating_held.py). The time is the object's ``deletionTimestamp``,
or the operator's first sight of it going when the stamp is unreadable, of another type, or later
(a server clock ahead of the operator's must not put the bound off).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellaops_runtime.controller.conditions import WAITING_FOR_DELETION
from stellaops_runtime.controller.owned import OwnedWriter, TerminatingError, held_too_long
from stellaops_runtime.controller.policy_state import policy_state
from stellaops_runtime.controller.settings import ControllerConfig
from stellaops_runtime.controller.state import INDEX_OWNED
from tests.unit.test_owned_terminating_state import GOING, POLICY, _rollout

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
KEY = ("cilium.io/v1alpha1", "TracingPolicyNamespaced", "shop", "stellaops-web")


def _going(since: datetime | None, name: str = "c") -> TerminatingError:
    meta = {"deletionTimestamp": "t", "finalizers": ["example.com/hold"]}
    return TerminatingError(kind="ConfigMap", namespace="a", name=name, meta=meta, since=since)


def test_held_for_the_bound_or_more_is_overdue_and_the_rest_say_when_to_look_again() -> None:
    old, new, untimed = (
        _going(NOW - timedelta(seconds=90), "old"),
        _going(NOW - timedelta(seconds=60)),
        _going(None),
    )
    overdue, next_in = held_too_long([old, new, untimed], now=NOW, bound=90.0)
    assert overdue == [old] and next_in == 30.0
    assert held_too_long([new], now=NOW, bound=60.0) == ([new], None)
    assert held_too_long([], now=NOW, bound=90.0) == ([], None)


def test_held_too_long_is_degraded_after_what_is_degraded_already() -> None:
    held = policy_state(
        names=[POLICY[1]],
        rollout=_rollout(["ENABLED"]),
        errors=[],
        missing_crd=False,
        terminating=[GOING],
        held_too_long=[GOING],
        held_after=90.0,
    )
    assert held == ("Degraded", WAITING_FOR_DELETION, f"{GOING}; held for 90s or more; 1/1 nodes running")
    failed = policy_state(
        names=[POLICY[1]],
        rollout=_rollout(["LOAD_ERROR"]),
        errors=[],
        missing_crd=False,
        terminating=[GOING],
        held_too_long=[GOING],
    )
    assert failed[:2] == ("Degraded", "LoadFailed")


def test_an_object_whose_namespace_goes_is_not_promised_back() -> None:
    meta = {"deletionTimestamp": "t", "finalizers": ["example.com/hold"]}
    going = TerminatingError(kind="ConfigMap", namespace="agents", name="c", meta=meta, namespace_going=True)
    assert str(going) == (
        "ConfigMap agents/c is being deleted (since t; finalizers pending: example.com/hold): "
        "its namespace agents is being deleted too, so it is not created again"
    )


@pytest.mark.parametrize(
    ("stamp", "ahead"),
    [
        ("2000-01-01T00:00:00Z", False),  # long ago: the stamp
        ("2999-01-01T00:00:00Z", True),  # a server clock ahead: the first sight
        ("not a time", True),
        (12345, True),
        ("2026-13-45T00:00:00Z", True),
        (None, True),
    ],
)
def test_the_time_held_is_the_stamp_or_the_first_sight_whichever_is_earlier(stamp: Any, ahead: bool) -> None:
    writer = OwnedWriter(ControllerConfig())
    writer._terminating.add("shop")
    before = datetime.now(UTC)
    first = writer._terminating_error(KEY, {"uid": "u1", "deletionTimestamp": stamp})
    assert first.since is not None and first.namespace_going
    if ahead:
        assert first.since >= before
    else:
        assert first.since == datetime(2000, 1, 1, tzinfo=UTC)
    again = writer._terminating_error(KEY, {"uid": "u1", "deletionTimestamp": stamp})
    assert again.since == first.since  # the first sight is kept
    other = writer._terminating_error(KEY, {"uid": "u2", "deletionTimestamp": None})
    assert other.since is not None and (not ahead or other.since >= first.since)  # a new object: timed anew


def test_the_first_sights_kept_are_only_of_objects_still_there() -> None:
    """One entry per object seen going, for the life of the process, grew without bound (O5 left
    alone): an object gone for good (its owner deleted too, no longer rendered) is forgotten once
    another object is seen going, so the memory is bounded by the objects being deleted at once."""
    writer = OwnedWriter(ControllerConfig())
    owned: dict[Any, list[dict[str, Any]]] = {}
    writer.indexes[INDEX_OWNED] = owned  # kopf's index of our objects: what is still there
    for i in range(500):
        key = (*KEY[:3], f"stellaops-web-{i}")
        meta = {"uid": f"u{i}", "deletionTimestamp": "2026-12-06T12:00:00Z"}
        owned[key] = [{"metadata": meta}]
        writer._terminating_error(key, meta)
        assert len(writer._deleting_seen) <= 2, len(writer._deleting_seen)
        del owned[key]  # its DELETED event: gone from the index
    still = (*KEY[:3], "held")
    owned[still] = [{"metadata": {"uid": "h"}}]
    writer._deleting_seen[still] = ("h", NOW)
    writer._terminating_error(KEY, {"uid": "u", "deletionTimestamp": None})
    assert still in writer._deleting_seen and writer._deleting_seen[still] == ("h", NOW)  # still held
