"""The agent's ``status.policies`` is bounded, and what it leaves out is counted, failures kept.

The agent copied every policy Tetragon listed, each with its error (1 KiB),
sensors and failed hooks: a node with thousands of Tetragon policies made an
ObservationNode status past etcd's 1.5 MiB request limit, every status patch
was refused, no heartbeat was written and the node went stale (its pods at
None, its policies' rollouts counting it stale). Now at most
``MAX_POLICY_ENTRIES`` entries and ``POLICY_ENTRIES_BYTES`` of them are kept,
``policiesOmitted`` counts the rest, and the entries the operator needs most
are kept first: the operator's own objects (their failed and partial loads first), then other
failed and partial loads.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.observation_status import (
    MAX_POLICY_ENTRIES,
    MAX_SENSORS,
    POLICY_ENTRIES_BYTES,
    bounded_policies,
    build_status,
)

UP = TetragonInfo(address="unix:///t.sock", reachable=True, version="v1.7.0")
CAPS = Capabilities(
    kernel_version="6.1.0", btf=True, bpf_permitted=True, tracepoints=True, uprobes=True,
    kprobes=True, usdt=True, ring_buffer=True, tetragon=UP,
)  # fmt: skip


def _entry(i: int, state: str = "ENABLED", *, name: str | None = None, error: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name or f"team-policy-{i:05d}",
        "namespace": "apps",
        "state": state,
        "sensors": ["generic_kprobe", "generic_tracepoint"],
        "kernelMemoryBytes": 1 << 20,
    }
    if error:
        entry["error"] = error
    return entry


def test_a_short_list_is_written_as_it_is() -> None:
    policies = [_entry(i) for i in range(5)]
    st = build_status(capabilities=CAPS, tetragon=UP, policies=policies, existing_conditions=None, now="t")
    assert st["policies"] == policies and st["policiesOmitted"] == 0


def test_thousands_of_policies_stay_under_the_bound_and_keep_failures_and_ours_first() -> None:
    policies = [_entry(i, error="e" * 1024) for i in range(5000)]
    policies[4000] = _entry(4000, "LOAD_ERROR", error="prog load failed")
    policies[4500] = _entry(4500, "PARTIALLY_ENABLED")
    policies[4999] = _entry(4999, name="stellaops-web-uprobes")
    st = build_status(capabilities=CAPS, tetragon=UP, policies=policies, existing_conditions=None, now="t")
    kept = st["policies"]
    size = len(json.dumps(st).encode())
    assert size < 1024 * 1024, size  # etcd refuses 1.5 MiB: far below, with room for the rest
    assert (
        len(kept) <= MAX_POLICY_ENTRIES
        and len(json.dumps(kept, separators=(",", ":")).encode()) <= POLICY_ENTRIES_BYTES
    )
    assert st["policiesOmitted"] == 5000 - len(kept) > 0
    names = [p["name"] for p in kept]
    # the operator's view: failures, then its own objects, are never the ones left out
    assert {"team-policy-04000", "team-policy-04500", "stellaops-web-uprobes"} <= set(names)
    # kept in Tetragon's order
    assert names == [p["name"] for p in policies if p["name"] in set(names)]


def test_an_entry_with_endless_sensors_is_bounded() -> None:
    entry = _entry(1) | {"sensors": [f"sensor-{i}-" + "s" * 500 for i in range(10_000)]}
    kept, omitted = bounded_policies([entry])
    assert omitted == 0 and len(kept[0]["sensors"]) == MAX_SENSORS
    assert kept[0]["sensorsOmitted"] == 10_000 - MAX_SENSORS
    assert all(len(s) <= 128 for s in kept[0]["sensors"])
    assert entry["sensors"][0].startswith("sensor-0")  # the caller's entry is not changed
    assert "sensorsOmitted" not in bounded_policies([_entry(2)])[0][0]


@pytest.mark.parametrize("policies", [None, []])
def test_no_list_is_an_empty_list(policies: list[dict[str, Any]] | None) -> None:
    assert bounded_policies(policies) == ([], 0)


def test_the_operators_objects_are_kept_before_other_owners_failures() -> None:
    # 1,200 policies of another tool that all fail to load, listed before ours (Tetragon's order is by
    # namespace and name): the operator reads only entries of its own names, and an object of ours
    # left out counts as pending (its LOAD_ERROR unseen: the pods there kept their level)
    policies = [_entry(i, "LOAD_ERROR", error="bad kprobe") for i in range(1200)]
    ours = [
        _entry(0, name="stellaops-web") | {"namespace": "shop"},
        _entry(0, "LOAD_ERROR", name="stellaops-web-uprobes", error="no such file") | {"namespace": "shop"},
    ]
    kept, omitted = bounded_policies(policies + ours)
    names = [p["name"] for p in kept]
    assert {"stellaops-web", "stellaops-web-uprobes"} <= set(names), omitted
    assert len(kept) == MAX_POLICY_ENTRIES and omitted == 1202 - MAX_POLICY_ENTRIES
    assert names[-2:] == ["stellaops-web", "stellaops-web-uprobes"]  # still in Tetragon's order


def test_a_changing_number_does_not_move_which_entries_are_kept() -> None:
    """Near the bound, the kept set depended on each entry's exact bytes: a kernelMemoryBytes that
    grew by a few digits (a number, nothing else) pushed the last kept entry out and back, so the
    written list and policiesOmitted churned with it. Numbers now count at their widest."""

    def size(e: dict[str, Any]) -> int:
        return len(json.dumps(e, separators=(",", ":")).encode()) + 1

    policies = [_entry(i, error="e" * 1000) for i in range(600)]
    one = size(policies[1])
    slack = POLICY_ENTRIES_BYTES % one  # left after as many whole entries as fit
    policies[0] = _entry(0, error="e" * (1000 + slack - 3))  # 3 bytes left: a longer number no longer fits
    kept, omitted = bounded_policies(policies)
    assert omitted > 0 and sum(size(e) for e in kept) <= POLICY_ENTRIES_BYTES
    for value in (0, 9, 10**9, 2**63 - 1):
        changed = [dict(e) for e in policies]
        changed[0]["kernelMemoryBytes"] = value
        kept_now, omitted_now = bounded_policies(changed)
        assert [e["name"] for e in kept_now] == [e["name"] for e in kept], value
        assert omitted_now == omitted, value
        assert sum(size(e) for e in kept_now) <= POLICY_ENTRIES_BYTES, value
