"""PolicyLoadWatch: which times Tetragon had not loaded our policies (agent/policy_load_gaps.py).

Each span it reports becomes a node-wide gap: a time the node's images may
have run while nothing of our policies traced them is never a watched time.
"""

from __future__ import annotations

from stellaops_runtime.agent.policy_load_gaps import EXPECT_SECONDS, PolicyLoadWatch

S = 1_000_000_000


def entry(state: str, *, name: str = "stellaops-web", gen: int = 1, **extra: object) -> dict:
    return {
        "name": name,
        "namespace": "shop",
        "state": state,
        "objectUid": "u1",
        "objectGeneration": gen,
        **extra,
    }


def covered(spans: list[tuple[int, int]], a: int, b: int) -> bool:
    """Whether the union of ``spans`` covers [a, b]."""
    at = a
    for s, e in sorted(spans):
        if s <= at < e or (s <= at and e >= b):
            at = max(at, e)
    return at >= b


def started(t0: int = 100 * S) -> tuple[PolicyLoadWatch, list[tuple[int, int]]]:
    """A watch whose stream connected and whose first poll saw our policy ENABLED; spans so far
    (no hold for the pods' relabel after the agent's start: its own test below)."""
    w = PolicyLoadWatch(start_ns=t0, relabel_seconds=0)
    w.observe([entry("ENABLED")], now_ns=t0 + 2 * S, connected=True, connects=1)
    return w, w.take(now_ns=t0 + 2 * S)


def test_a_policy_listed_loading_is_unwatched_until_a_poll_sees_it_enabled() -> None:
    w, _ = started()
    w.observe([entry("ENABLED")], now_ns=110 * S, connected=True, connects=1)
    assert w.take(now_ns=110 * S) == []  # settled, no change: nothing
    w.observe([entry("LOADING", gen=2)], now_ns=120 * S, connected=True, connects=1)
    assert w.open and w.pending == 1
    first = w.take(now_ns=125 * S)  # an open span is handed over up to now, piece by piece
    assert covered(first, 110 * S, 125 * S), first
    w.observe([entry("LOADING", gen=2)], now_ns=130 * S, connected=True, connects=1)
    w.observe([entry("ENABLED", gen=2)], now_ns=140 * S, connected=True, connects=1)
    assert not w.open
    rest = w.take(now_ns=150 * S)
    assert covered(first + rest, 110 * S, 140 * S), (first, rest)
    assert all(b <= 140 * S for _, b in rest)  # closed at the poll that saw it enabled
    w.observe([entry("ENABLED", gen=2)], now_ns=160 * S, connected=True, connects=1)
    assert w.take(now_ns=160 * S) == []


def test_a_reconnection_is_unwatched_until_the_first_poll_after_it() -> None:
    w, _ = started()
    w.observe(None, now_ns=110 * S, connected=False, connects=1)  # Tetragon away: the outage's
    w.observe([entry("ENABLED")], now_ns=120 * S, connected=True, connects=2)
    spans = w.take(now_ns=120 * S)
    assert covered(spans, 110 * S, 120 * S) and not w.open, spans


def test_after_tetragon_restarts_a_policy_listed_late_is_unwatched_since_the_reconnection() -> None:
    """Tetragon answers before it loads the policies: the first list after the restart is empty."""
    w, _ = started()
    w.observe(None, now_ns=110 * S, connected=False, connects=1)
    w.observe([], now_ns=120 * S, connected=True, connects=2)  # back, nothing loaded yet
    w.observe([], now_ns=130 * S, connected=True, connects=2)
    w.observe([entry("ENABLED")], now_ns=140 * S, connected=True, connects=2)
    spans = w.take(now_ns=140 * S)
    assert covered(spans, 110 * S, 140 * S), spans


def test_a_reload_between_two_polls_is_unwatched_between_them() -> None:
    w, _ = started()
    w.observe([entry("ENABLED", gen=1)], now_ns=110 * S, connected=True, connects=1)
    w.take(now_ns=110 * S)
    w.observe([entry("ENABLED", gen=2)], now_ns=120 * S, connected=True, connects=1)
    assert covered(w.take(now_ns=120 * S), 110 * S, 120 * S)


def test_a_reload_that_keeps_the_version_is_unwatched_between_the_polls_when_its_number_moved() -> None:
    """Defect (s48 NF2): a reload between two polls under the same uid/generation (Tetragon's delete
    and add on a Node's new labels or a metadata-only change) recorded no gap, though nothing of the
    policy traced in between. Tetragon numbers each load (``tetragonId``, TracingPolicyStatus.id):
    another number is a reload; the same, or none told, is none. Seen failing before (no span)."""
    w, _ = started()
    w.observe([entry("ENABLED", tetragonId=3)], now_ns=110 * S, connected=True, connects=1)
    w.take(now_ns=110 * S)
    w.observe([entry("ENABLED", tetragonId=3)], now_ns=120 * S, connected=True, connects=1)
    w.observe([entry("ENABLED")], now_ns=130 * S, connected=True, connects=1)
    assert w.take(now_ns=130 * S) == []
    w.observe([entry("ENABLED", tetragonId=8)], now_ns=140 * S, connected=True, connects=1)
    assert covered(w.take(now_ns=140 * S), 130 * S, 140 * S)


def test_a_settled_node_records_nothing_and_a_new_policy_costs_one_poll_interval() -> None:
    w, _ = started()
    for t in range(110, 100 + int(EXPECT_SECONDS) + 200, 10):  # steady: no span
        w.observe([entry("ENABLED"), entry("LOAD_ERROR", name="stellaops-db")], now_ns=t * S,
                  connected=True, connects=1)  # fmt: skip
    spans = w.take(now_ns=2000 * S)
    assert [s for s in spans if s[0] >= 120 * S] == [], spans
    late = 100 + int(EXPECT_SECONDS) + 200
    listed = [
        entry("ENABLED"),
        entry("LOAD_ERROR", name="stellaops-db"),
        entry("ENABLED", name="stellaops-new"),
    ]
    w.observe(listed, now_ns=late * S, connected=True, connects=1)
    spans = w.take(now_ns=late * S)
    assert spans and min(a for a, _ in spans) >= (late - 10) * S, spans  # from the poll before only


def test_other_tools_policies_and_unknown_answers_open_nothing() -> None:
    w, _ = started()
    w.observe([entry("ENABLED"), entry("LOADING", name="theirs"), entry("LOADING", fromObject=False)],
              now_ns=110 * S, connected=True, connects=1)  # fmt: skip
    assert not w.open and w.take(now_ns=110 * S) == []
    w.observe(None, now_ns=120 * S, connected=True, connects=1)  # the API did not answer
    assert not w.open


def test_an_open_span_stays_open_while_tetragon_does_not_answer() -> None:
    w, _ = started()
    w.observe([entry("LOADING")], now_ns=110 * S, connected=True, connects=1)
    w.observe(None, now_ns=120 * S, connected=True, connects=1)
    assert w.open
    assert covered(w.take(now_ns=130 * S), 102 * S, 130 * S)


def test_hostile_states_count_as_pending() -> None:
    w, _ = started()
    w.observe([entry("\x00garbage")], now_ns=110 * S, connected=True, connects=1)
    assert w.open
    w.observe([entry("enabled")], now_ns=120 * S, connected=True, connects=1)  # any case
    assert not w.open


def test_a_reconnection_while_tetragon_does_not_answer_stays_open_until_it_answers() -> None:
    w, _ = started()
    w.observe(None, now_ns=110 * S, connected=False, connects=1)
    w.observe(None, now_ns=120 * S, connected=True, connects=2)  # the stream is back, the API is not
    w.observe(None, now_ns=130 * S, connected=True, connects=2)
    assert w.open
    w.observe([entry("ENABLED")], now_ns=140 * S, connected=True, connects=2)
    assert not w.open and covered(w.take(now_ns=140 * S), 110 * S, 140 * S)


def test_a_reload_or_load_behind_polls_tetragon_did_not_answer_is_unwatched_since_its_last_answer() -> None:
    """A poll whose ListTracingPolicies failed (a timeout while Tetragon loads) saw nothing: a
    reload or a load seen after it may have begun any time since the last poll that was answered."""
    w, _ = started()
    w.observe([entry("ENABLED", gen=1)], now_ns=110 * S, connected=True, connects=1)
    w.observe(None, now_ns=120 * S, connected=True, connects=1)  # ListTracingPolicies timed out
    w.observe([entry("ENABLED", gen=2)], now_ns=130 * S, connected=True, connects=1)  # reloaded
    assert covered(w.take(now_ns=130 * S), 110 * S, 130 * S)
    w.observe(None, now_ns=140 * S, connected=True, connects=1)
    w.observe([entry("LOADING", gen=3)], now_ns=150 * S, connected=True, connects=1)
    w.observe([entry("ENABLED", gen=3)], now_ns=160 * S, connected=True, connects=1)
    assert covered(w.take(now_ns=160 * S), 130 * S, 160 * S)


def test_a_policy_disabled_is_unwatched_from_the_last_poll_that_saw_it_tracing() -> None:
    """``tetra tracingpolicy disable`` (same version, state DISABLED): nothing of it traces from then
    on, while the windows of that day before it still show its stacks; the day must not read watched.
    The span stays open while the operator caps the pods and Tetragon follows the new labels."""
    w, _ = started()
    w.observe([entry("ENABLED")], now_ns=110 * S, connected=True, connects=1)
    assert w.take(now_ns=110 * S) == []
    w.observe([entry("DISABLED")], now_ns=120 * S, connected=True, connects=1)
    assert w.open
    assert covered(w.take(now_ns=120 * S), 110 * S, 120 * S)
    held = 120 + int(EXPECT_SECONDS)
    w.observe([entry("DISABLED")], now_ns=(held - 10) * S, connected=True, connects=1)
    assert w.open  # the pods' relabel (the operator's cap) may take this long to reach Tetragon
    w.observe([entry("DISABLED")], now_ns=held * S, connected=True, connects=1)
    assert not w.open
    assert covered(w.take(now_ns=held * S), 120 * S, held * S)
    w.observe([entry("DISABLED")], now_ns=(held + 10) * S, connected=True, connects=1)
    assert w.take(now_ns=(held + 10) * S) == []  # a policy that stays disabled costs nothing more


def test_a_policy_enabled_again_or_failed_or_skipped_or_gone_is_a_change_of_what_traces() -> None:
    for before, after in [
        ("DISABLED", "ENABLED"),  # tetra tracingpolicy enable: traced from some time in between
        ("ENABLED", "LOAD_ERROR"),
        ("PARTIALLY_ENABLED", "ERROR"),
        ("ENABLED", "SKIPPED"),  # its nodeSelector no longer takes this node
        ("ENABLED", None),  # deleted (its ObservationPolicy went): listed no more
    ]:
        w, _ = started()
        w.observe([entry(before)], now_ns=110 * S, connected=True, connects=1)
        w.take(now_ns=110 * S)
        w.observe([] if after is None else [entry(after)], now_ns=120 * S, connected=True, connects=1)
        assert w.open, (before, after)
        assert covered(w.take(now_ns=120 * S), 110 * S, 120 * S), (before, after)


def test_after_the_agent_starts_the_gap_stays_open_while_the_pods_may_be_relabelled() -> None:
    """An agent away longer than the operator's stale-after comes back to pods without their level
    labels: the operator gives them back after its first report, and Tetragon's policy filter
    follows its own pod cache, while ListTracingPolicies says ENABLED all along. Nothing of our
    policies traces those pods meanwhile; the start day is a gap (the hole since the last agent),
    but one that starts before midnight ran on into the next day unwatched, and that day read
    watched. The span of the agent's first connection is held open for EXPECT_SECONDS after its
    first report (the writer's ``ceiling_told``/``reported``, which follow the poll)."""
    t0 = 100 * S
    w = PolicyLoadWatch(start_ns=t0)
    w.observe([entry("ENABLED")], now_ns=t0 + 2 * S, connected=True, connects=1)
    w.ceiling_told(now_ns=t0 + 2 * S)
    w.reported(now_ns=t0 + 2 * S)
    assert w.open
    held = t0 + 2 * S + int(EXPECT_SECONDS * S)
    w.observe([entry("ENABLED")], now_ns=held - 10 * S, connected=True, connects=1)
    assert w.open
    w.observe([entry("ENABLED")], now_ns=held, connected=True, connects=1)
    assert not w.open and covered(w.take(now_ns=held), t0, held)
    # A stream outage later that no poll saw, so no lowered ceiling written: no relabel (one the
    # writer wrote is held: tests/integration/test_policy_load_relabel.py).
    w.observe(None, now_ns=held + 10 * S, connected=False, connects=1)
    w.observe([entry("ENABLED")], now_ns=held + 20 * S, connected=True, connects=2)
    assert not w.open


def test_a_hold_does_not_last_as_long_as_a_clock_stepped_back() -> None:
    """The holds (the agent's first connection, a change of what traces) end at a wall-clock time:
    a clock stepped back a year (a VM resumed with a wrong clock) kept the node in a gap for a year,
    every day of its images unknown. After a step back a hold lasts its length from the step at most."""
    t0 = 1_000_000 * S
    w = PolicyLoadWatch(start_ns=t0)
    w.observe([entry("ENABLED")], now_ns=t0, connected=True, connects=1)
    w.ceiling_told(now_ns=t0)
    w.reported(now_ns=t0)
    assert w.open
    back = t0 - 365 * 86_400 * S  # a year back
    w.observe([entry("ENABLED")], now_ns=back, connected=True, connects=1)
    assert w.open  # still within the hold's length from the step
    w.observe([entry("ENABLED")], now_ns=back + int(EXPECT_SECONDS * S), connected=True, connects=1)
    assert not w.open


def test_a_span_not_in_the_pipeline_yet_caps_the_watch_record() -> None:
    """The spans start at the poll before the one that saw them, so a flush in between wrote a
    watch record claiming past their start: a SIGKILL before they were stored lost them, and the
    next agent's restart gap began at the record. ``unstored_from`` is the earliest moment of a
    span not in the pipeline yet (held, taken and not marked, or the unhanded part of an open one)."""
    w, _ = started()
    w.observe([entry("ENABLED", gen=1)], now_ns=110 * S, connected=True, connects=1)
    w.marked()
    assert w.unstored_from() is None
    w.observe([entry("ENABLED", gen=2)], now_ns=120 * S, connected=True, connects=1)  # reloaded
    assert w.unstored_from() == 110 * S
    spans = w.take(now_ns=121 * S)
    assert w.unstored_from() == 110 * S  # taken, not marked yet
    w.give_back(spans)  # the marker's first call failed: all of them back
    assert w.unstored_from() == 110 * S
    w.take(now_ns=122 * S)
    w.marked()
    assert w.unstored_from() is None
    w.observe([entry("LOADING", gen=3)], now_ns=130 * S, connected=True, connects=1)
    w.take(now_ns=135 * S)
    w.marked()
    assert w.unstored_from() == 135 * S  # the open span's part not handed over yet


def test_the_agent_s_watch_record_is_capped_by_the_policy_watch(tmp_path: object) -> None:
    from pathlib import Path

    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config

    d = Path(str(tmp_path))
    config = parse_config(
        {
            "nodeName": "n1",
            "tetragon": {"address": f"unix://{d}/no.sock"},
            "store": {"url": f"sqlite:///{d / 'hot.db'}", "spoolPath": str(d / "spool")},
            "metrics": {"port": 0},
            "lifecycle": {"enabled": False},
            "observationNode": {"enabled": True, "kubeconfig": str(d / "absent")},
        }
    )
    agent = Agent(config, node_name="n1")
    watch = agent.outages.policies
    assert watch is not None
    watch.observe([entry("ENABLED", gen=1)], now_ns=110 * S, connected=True, connects=1)
    watch.observe([entry("ENABLED", gen=2)], now_ns=120 * S, connected=True, connects=1)
    assert agent.watch.drops_through() == watch.unstored_from() <= 110 * S


def test_a_start_the_operator_never_heard_of_stays_a_gap_until_its_report_and_the_relabel() -> None:
    """An agent whose ObservationNode write is not taken (the API server down, RBAC, a lost answer):
    the operator hears nothing, keeps the node stale and its pods without their level labels, and
    nothing of our policies traces them however long Tetragon lists them ENABLED. A hold counted
    from the first connection ended while that lasted; the span stays open until a write of the
    ceiling is taken, and for the relabel's length after it."""
    t0 = 100 * S
    w = PolicyLoadWatch(start_ns=t0)
    w.observe([entry("ENABLED")], now_ns=t0 + 2 * S, connected=True, connects=1)
    late = t0 + 2 * S + int(2 * EXPECT_SECONDS * S)
    w.observe([entry("ENABLED")], now_ns=late, connected=True, connects=1)
    assert w.open  # the pods may still be unlabelled: nothing says the operator heard
    w.ceiling_told(now_ns=late)  # the write is attempted and refused: still nothing heard
    w.observe([entry("ENABLED")], now_ns=late + int(EXPECT_SECONDS * S) + S, connected=True, connects=1)
    assert w.open
    taken = late + int(EXPECT_SECONDS * S) + 2 * S
    w.ceiling_told(now_ns=taken)
    w.reported(now_ns=taken)
    w.observe([entry("ENABLED")], now_ns=taken + int(EXPECT_SECONDS * S) - S, connected=True, connects=1)
    assert w.open  # the relabel after the report
    end = taken + int(EXPECT_SECONDS * S)
    w.observe([entry("ENABLED")], now_ns=end, connected=True, connects=1)
    assert not w.open and covered(w.take(now_ns=end), t0, end)


def test_a_ceiling_written_while_the_stream_is_down_holds_the_reconnection_not_the_outage() -> None:
    """The writer writes the lowered ceiling while Tetragon's stream is down (or the agent's own
    probes run instead): that time is the outage's (or theirs), never a policy-load span that stays
    open while the native probes deliver. The ceiling written again at the reconnection holds."""
    w = PolicyLoadWatch(start_ns=100 * S)
    w.observe([entry("ENABLED")], now_ns=102 * S, connected=True, connects=1)
    w.ceiling_told(now_ns=102 * S)
    w.reported(now_ns=102 * S)
    w.observe([entry("ENABLED")], now_ns=1100 * S, connected=True, connects=1)
    assert not w.open  # the first report's relabel is over
    w.take(now_ns=1100 * S)
    w.observe(None, now_ns=1110 * S, connected=False, connects=1)  # down: None written
    w.ceiling_told(now_ns=1110 * S)
    w.reported(now_ns=1110 * S)
    w.observe(None, now_ns=3000 * S, connected=False, connects=1)
    assert not w.open and w.take(now_ns=3000 * S) == []
    w.observe([entry("ENABLED")], now_ns=3010 * S, connected=True, connects=2)  # back: its ceiling
    w.ceiling_told(now_ns=3010 * S)
    w.reported(now_ns=3011 * S)
    w.observe([entry("ENABLED")], now_ns=3011 * S + int(EXPECT_SECONDS * S) - S, connected=True, connects=2)
    assert w.open
    end = 3011 * S + int(EXPECT_SECONDS * S)
    w.observe([entry("ENABLED")], now_ns=end, connected=True, connects=2)
    assert not w.open and covered(w.take(now_ns=end), 3000 * S, end)


def test_the_first_connection_is_a_gap_from_the_agent_s_start() -> None:
    """Without any hold, an agent's start is a gap from its start to its first poll, so the start
    day reads unknown for the node's images whatever the relabel hold adds (docs/operations.md)."""
    w, spans = started(t0=100 * S)
    assert covered(spans, 100 * S, 102 * S) and not w.open


def test_a_tetragon_restart_told_by_its_socket_alone_is_unwatched_since_the_old_one_was_seen() -> None:
    """Defect (s48 RNF2): a Tetragon restart between two polls that lists every object as before
    (same version, same load number: a new Tetragon numbers from 1) but is told by its unix socket
    made anew (agent/policy_reloads.py ``server_identity``) recorded no gap, though nothing of our
    policies traced between the old Tetragon's stop and the new one's loads. The JSON export source
    sees no reconnection then (Tetragon appends to the same file). Now it is a reload: from the last
    poll that saw the old socket (a poll that could not tell it is no bound)."""
    w, _ = started()
    w.observe([entry("ENABLED", tetragonId=1)], now_ns=110 * S, connected=True, connects=1, server=(1, 5))
    w.take(now_ns=110 * S)
    w.observe([entry("ENABLED", tetragonId=1)], now_ns=120 * S, connected=True, connects=1, server=None)
    assert w.take(now_ns=120 * S) == []
    w.observe([entry("ENABLED", tetragonId=1)], now_ns=130 * S, connected=True, connects=1, server=(1, 6))
    assert covered(w.take(now_ns=130 * S), 110 * S, 130 * S)
    w.observe([entry("ENABLED", tetragonId=1)], now_ns=140 * S, connected=True, connects=1, server=(1, 6))
    assert w.take(now_ns=140 * S) == []


def test_one_reload_of_several_objects_between_two_polls_is_one_span() -> None:
    """Defect (s48 RNF2): a reload seen on several objects of ours at one poll (a Tetragon restart
    renumbering them all) recorded one identical span per object: policy_load_gaps_total counted
    each. One span now."""
    w, _ = started()
    up = "stellaops-web-uprobes"
    w.observe([entry("ENABLED", tetragonId=1), entry("ENABLED", name=up, tetragonId=2)], now_ns=110 * S,
              connected=True, connects=1)  # fmt: skip
    w.take(now_ns=110 * S)
    before = w.spans
    w.observe([entry("ENABLED", tetragonId=4), entry("ENABLED", name=up, tetragonId=3)], now_ns=120 * S,
              connected=True, connects=1)  # fmt: skip
    taken = w.take(now_ns=120 * S)
    assert covered(taken, 110 * S, 120 * S) and w.spans == before + 1, (taken, w.spans - before)
