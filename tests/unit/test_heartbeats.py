"""Staleness on the operator's clock: when a heartbeat arrived, not what the agent's clock stamped.

``controller.heartbeats``: a new ``heartbeatTime`` value is a report a live
agent made no later than its arrival; the first value seen of a node counts
from the earlier of its stamp and now.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stellaops_runtime.contracts.crds import FEATURE_LABEL_PREFIX
from stellaops_runtime.controller.heartbeats import LABELS_TRUSTED_SECONDS, Heartbeats, judged_fresh
from stellaops_runtime.controller.node_labels import is_stale, node_feature_labels

NOW = datetime(2026, 12, 5, 3, 0, 0, tzinfo=UTC)


def _node(stamp: datetime | str | None, name: str = "node-a") -> dict[str, Any]:
    text = stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(stamp, datetime) else stamp
    return {"metadata": {"name": name}, "status": {} if text is None else {"heartbeatTime": text}}


def _stale(beats: Heartbeats, node: dict[str, Any], now: datetime) -> bool:
    return is_stale(node, now=now, stale_after_seconds=90, received=beats.received(node, now=now))


def test_an_agent_clock_behind_is_fresh_from_its_next_heartbeat() -> None:
    beats = Heartbeats()
    behind = timedelta(minutes=5)
    assert _stale(beats, _node(NOW - behind), NOW)  # first sight: its stamp, 5 min old by our clock
    later = NOW + timedelta(seconds=30)
    assert not _stale(beats, _node(later - behind), later)  # a new heartbeat arrived now: alive
    assert not _stale(beats, _node(later - behind), later + timedelta(seconds=89))
    assert _stale(beats, _node(later - behind), later + timedelta(seconds=91))  # none since: stale


def test_an_agent_clock_ahead_does_not_keep_a_dead_agent_fresh() -> None:
    beats = Heartbeats()
    node = _node(NOW + timedelta(hours=1))
    assert not _stale(beats, node, NOW)
    assert _stale(beats, node, NOW + timedelta(seconds=91))  # the stamp is still "in the future"
    far = _node("2099-01-01T00:00:00Z", name="node-b")
    assert not _stale(beats, far, NOW)
    assert _stale(beats, far, NOW + timedelta(minutes=2))


def test_a_clock_stepped_back_is_still_a_live_agent() -> None:
    beats = Heartbeats()
    assert not _stale(beats, _node(NOW), NOW)
    later = NOW + timedelta(seconds=60)
    assert not _stale(beats, _node(NOW - timedelta(hours=2)), later)  # a new value: it wrote just now


def test_no_heartbeat_or_an_unreadable_one_is_stale_and_forgetting_starts_over() -> None:
    beats = Heartbeats()
    assert _stale(beats, _node(None), NOW)
    assert _stale(beats, _node("yesterday"), NOW)
    assert _stale(beats, {"metadata": {"name": "x"}, "status": "hostile"}, NOW)
    old = _node(NOW - timedelta(hours=1))
    assert _stale(beats, old, NOW)
    assert not _stale(beats, _node(NOW), NOW)
    beats.forget("node-a")  # deleted: a re-created node with an old stamp is judged by it again
    assert _stale(beats, old, NOW + timedelta(seconds=1))


def test_received_all_by_name() -> None:
    beats = Heartbeats()
    nodes = [_node(NOW, "a"), _node(None, "b"), _node(NOW + timedelta(days=1), "c")]
    assert beats.received_all(nodes, now=NOW) == {"a": NOW, "c": NOW}


def test_unreachable_since_on_the_operators_clock() -> None:
    beats = Heartbeats()
    ahead = NOW + timedelta(days=1)
    assert beats.unreachable_since("a", ahead, now=NOW) == NOW  # the agent's clock a day ahead: from now
    assert beats.unreachable_since("a", ahead, now=NOW + timedelta(seconds=5)) == NOW  # same transition
    behind = NOW - timedelta(days=1)
    assert beats.unreachable_since("b", behind, now=NOW) == behind  # first sight: the earlier one
    later = NOW + timedelta(seconds=10)
    assert beats.unreachable_since("b", behind + timedelta(hours=1), now=later) == later  # a new transition
    assert beats.unreachable_since("b", None, now=later) is None  # no time said: nothing assumed
    beats.forget("a")
    assert beats.unreachable_since("a", ahead, now=later) == later


def _working(stamp: datetime, name: str = "node-a") -> dict[str, Any]:
    node = _node(stamp, name)
    node["status"].update(
        source="tetragon",
        maxPosture="ActiveTracing",
        capabilities={"uprobes": True, "tetragon": {"reachable": True, "version": "v1.7.0"}},
    )
    return node


def test_a_restarted_operator_keeps_a_node_it_judged_fresh_fresh_whatever_its_clock() -> None:
    """The Node's labels hold the last judgement: fresh (the report's source and ceiling), so the
    first sight of a stamp ten minutes behind counts from now; judged stale (none/None), or labels
    that cannot tell, leave the earlier of stamp and now."""
    behind = _working(NOW - timedelta(minutes=10))
    fresh_labels = node_feature_labels(behind)
    assert fresh_labels[FEATURE_LABEL_PREFIX + "max-posture"] != "None"
    beats = Heartbeats(labels={"node-a": fresh_labels}.get)
    assert not _stale(beats, behind, NOW)
    assert not _stale(beats, behind, NOW + timedelta(seconds=89))
    assert _stale(beats, behind, NOW + timedelta(seconds=91))  # no heartbeat since: stale all the same
    for labels in (node_feature_labels(behind, stale=True), {}, None, "hostile"):
        assert _stale(Heartbeats(labels={"node-a": labels}.get), behind, NOW), labels
    # a report with no working source: its source and ceiling labels are none/None fresh or stale,
    # so the heartbeat label says which (a restart flapped such a node stale and back without it)
    down = _node(NOW - timedelta(minutes=10))
    down["status"].update(source="none", maxPosture="None")
    fresh_down, stale_down = node_feature_labels(down), node_feature_labels(down, stale=True)
    assert fresh_down[FEATURE_LABEL_PREFIX + "heartbeat"] == "fresh"
    assert stale_down[FEATURE_LABEL_PREFIX + "heartbeat"] == "stale"
    assert not _stale(Heartbeats(labels={"node-a": fresh_down}.get), down, NOW)
    assert _stale(Heartbeats(labels={"node-a": stale_down}.get), down, NOW)
    # an older operator's labels (no heartbeat label) cannot tell for it: judged by its stamp
    older = {k: v for k, v in fresh_down.items() if k != FEATURE_LABEL_PREFIX + "heartbeat"}
    assert _stale(Heartbeats(labels={"node-a": older}.get), down, NOW)
    assert judged_fresh(fresh_labels, behind) and not judged_fresh(older, down)
    # ... and a hostile heartbeat label vouches for nothing
    for value in ("Fresh", "true", "", 1, None):
        hostile = fresh_down | {FEATURE_LABEL_PREFIX + "heartbeat": value}
        assert _stale(Heartbeats(labels={"node-a": hostile}.get), down, NOW), value
    # the ObservationNode deleted and made again (restored from a backup): the labels judged the old one
    beats.forget("node-a")
    assert _stale(beats, behind, NOW + timedelta(seconds=100))


def test_a_transition_first_seen_is_timed_by_the_agents_own_account() -> None:
    """Found already there (the operator just started): heartbeat minus transition, both the node's
    clock, before now; a day behind or ahead alike. Seen change while running: from its arrival."""
    beats = Heartbeats()
    for skew in (timedelta(days=-1), timedelta(days=1), timedelta(0)):
        name = f"n{skew.days}"
        since, beat = NOW - timedelta(seconds=30) + skew, NOW + skew
        assert beats.unreachable_since(name, since, now=NOW, beat=beat) == NOW - timedelta(seconds=30)
        later = NOW + timedelta(seconds=5)  # later heartbeats of the same transition: kept
        assert beats.unreachable_since(name, since, now=later, beat=beat + timedelta(seconds=5)) == (
            NOW - timedelta(seconds=30)
        )
        again = since + timedelta(minutes=1)  # a new transition seen while running: from now
        assert beats.unreachable_since(name, again, now=later, beat=beat + timedelta(minutes=1)) == later
    # a heartbeat stamped before its transition (a clock stepped back): lasted 0, from now
    assert beats.unreachable_since("odd", NOW, now=NOW, beat=NOW - timedelta(hours=1)) == NOW
    assert beats.unreachable_since("far", datetime(1, 1, 1, tzinfo=UTC), now=NOW, beat=NOW) is not None


def test_labels_vouch_for_an_hour_of_a_dead_agent_at_most() -> None:
    """An operator restarted within stale_after each time (a crash loop) left the labels saying
    "judged fresh" for a dead node, and each start counted it from now: for ever. A report stamped
    more than LABELS_TRUSTED_SECONDS ago is judged by its stamp; within it, the labels still hold."""
    assert LABELS_TRUSTED_SECONDS == 3600.0
    for age, stale in ((timedelta(minutes=59), False), (timedelta(hours=2), True), (timedelta(days=3), True)):
        node = _working(NOW - age)
        beats = Heartbeats(labels={"node-a": node_feature_labels(node)}.get)
        assert _stale(beats, node, NOW) is stale, age
    ahead = _working(NOW + timedelta(hours=5))  # a clock ahead: its stamp is not old, from now
    assert not _stale(Heartbeats(labels={"node-a": node_feature_labels(ahead)}.get), ahead, NOW)
    docs = Path(__file__).resolve().parents[2] / "docs" / "operator.md"
    text = " ".join(docs.read_text().split())
    assert "The labels vouch only for a report stamped within the last hour" in text
    assert "such a node goes stale an hour after its last heartbeat at most, not never" in text


def test_the_names_of_deleted_observation_nodes_are_bounded() -> None:
    """Autoscaled nodes whose names never come back: the operator does not remember them all."""
    from stellaops_runtime.controller.heartbeats import MAX_FORGOTTEN

    beats = Heartbeats()
    for i in range(MAX_FORGOTTEN * 2 + 5):
        beats.forget(f"node-{i}")
    assert len(beats._forgotten) <= MAX_FORGOTTEN


def test_a_restarted_operator_keeps_a_node_it_judged_stale_stale_whatever_its_clock() -> None:
    """The Node's heartbeat label says the predecessor judged the report stale: a dead agent whose
    clock runs ahead (its last stamp "in the future" or recent by the operator's clock) is not
    fresh again after a restart (its pods' ceiling raised, its policies counting it running,
    its observer Ready) until its next heartbeat; an accurate stamp keeps its own time."""
    for ahead in (timedelta(minutes=4), timedelta(hours=1)):
        dead = _working(NOW - timedelta(minutes=5) + ahead)  # its last report, 5 minutes ago
        stale = node_feature_labels(dead, stale=True)
        beats = Heartbeats(labels={"node-a": stale}.get, stale_after_seconds=90)
        assert _stale(beats, dead, NOW), ahead
        later = NOW + timedelta(seconds=30)
        assert not _stale(beats, _working(later + ahead), later)  # its next heartbeat: alive
    accurate = _working(NOW - timedelta(minutes=2))
    beats = Heartbeats(
        labels={"node-a": node_feature_labels(accurate, stale=True)}.get, stale_after_seconds=90
    )
    assert beats.received(accurate, now=NOW) == NOW - timedelta(minutes=2)  # timed from its stamp
    # labels that do not say stale (fresh, none, an older operator's) keep the rules above
    assert not _stale(
        Heartbeats(labels={}.get, stale_after_seconds=90), _working(NOW + timedelta(hours=1)), NOW
    )
    # a new node: its ObservationNode had no heartbeat when this process saw it (the label says stale
    # for that), so its first report is judged by its stamp, not held stale until the next one
    new = Heartbeats(labels={"node-a": node_feature_labels(accurate, stale=True)}.get, stale_after_seconds=90)
    assert new.received(_node(None), now=NOW) is None
    assert not _stale(new, _working(NOW), NOW)
