"""The probe ConfigMap stays under the API server's 1 MiB however big the policies are.

Every policy's probe entry and the opted-out pods go into one ConfigMap, and
a ConfigMap's data holds at most 1 MiB (the API server answers 422 beyond
it). A policy of ~150 KB is what a scanner lists for one library
(tests/realkube/test_big_policy_real.py), so a few namespaces' policies went
past it: the write was refused on every retry, the agents kept a ConfigMap
that no longer changed (a new opted-out pod never reached the list, a new
policy never reached the native probes) and every policy deletion waited
for ever for its entry to leave (Terminating). Now the entries that do not
fit are left out, largest first, and named in ``policiesOmitted``; the
opted-out list keeps its own budget.
"""

from __future__ import annotations

import json
from typing import Any

from stellaops_runtime.controller.opted_out import OptedOutPod
from stellaops_runtime.controller.render_policy import (
    MAX_PROBE_CONFIG_BYTES,
    PROBE_CONFIG_KEY,
    render_probe_configmap,
)
from stellaops_runtime.native.policy_config import parse_opted_out, parse_payload

CONFIGMAP_LIMIT = 1 << 20  # the API server's limit on a ConfigMap's data (keys and values)


def _entry(name: str, symbols: int) -> dict[str, Any]:
    fn = {"binaryPath": f"/usr/lib/{name}.so", "symbols": [f"{name}_fn_{j:05d}" for j in range(symbols)]}
    return {"kind": "ObservationPolicy", "namespace": "ns", "name": name, "functions": [fn]}


def _data_size(cm: dict[str, Any]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in cm["data"].items())


def test_entries_that_do_not_fit_are_left_out_largest_first_and_named() -> None:
    entries = {f"ObservationPolicy/ns/p{i}": _entry(f"p{i}", 8_000) for i in range(5)}  # ~1.1 MiB
    entries["ObservationPolicy/ns/huge"] = _entry("huge", 40_000)
    entries["ObservationPolicy/ns/small"] = _entry("small", 3)
    pods = [OptedOutPod("shop", f"pod-{i}", f"uid-{i}") for i in range(100)]
    cm = render_probe_configmap(name="probes", namespace="ns", entries=entries, owner=None, opted_out=pods)
    assert _data_size(cm) <= MAX_PROBE_CONFIG_BYTES < CONFIGMAP_LIMIT
    raw = cm["data"][PROBE_CONFIG_KEY].encode()
    kept = parse_payload(raw)  # the agents' reader takes it
    doc = json.loads(raw)
    omitted = doc["policiesOmitted"]
    assert "ObservationPolicy/ns/huge" in omitted and "ObservationPolicy/ns/small" in kept
    assert sorted([*kept, *omitted]) == sorted(entries) and not set(kept) & set(omitted)
    assert omitted == sorted(omitted)
    assert all(kept[k] == entries[k] for k in kept)  # what is kept is whole
    assert len(parse_opted_out(raw)[0]) == 100  # the opt-outs are not what gives way


def test_entries_that_fit_give_no_omission_field() -> None:
    entries = {"ObservationPolicy/ns/a": _entry("a", 10)}
    cm = render_probe_configmap(name="probes", namespace="ns", entries=entries, owner=None)
    doc = json.loads(cm["data"][PROBE_CONFIG_KEY])
    assert "policiesOmitted" not in doc and list(doc["policies"]) == ["ObservationPolicy/ns/a"]


def test_the_biggest_opted_out_list_and_policies_still_fit() -> None:
    entries = {f"ClusterObservationPolicy//p{i}": _entry(f"p{i}", 8_000) for i in range(8)}
    pods = [OptedOutPod("n" * 63, "p" * 253 + str(i), f"{i:036d}") for i in range(6_000)]
    cm = render_probe_configmap(name="probes", namespace="ns", entries=entries, owner=None, opted_out=pods)
    assert _data_size(cm) <= MAX_PROBE_CONFIG_BYTES
    doc = json.loads(cm["data"][PROBE_CONFIG_KEY])
    assert doc["optedOutOmitted"] > 0 and doc["policiesOmitted"]


def test_the_pods_at_a_level_give_way_to_the_policies_never_the_reverse() -> None:
    """``optedIn`` (uids of pods at a level, controller/opted_out.py) only lets a pod created opted
    out be observed again; a policy left out unloads its probes on every node. So the list takes
    what the policies leave, is cut (counted in optedInOmitted, those pods dropped as the record
    says: a gap) before any policy is left out, and the ConfigMap still fits."""
    entries = {f"ClusterObservationPolicy//p{i}": _entry(f"p{i}", 8_000) for i in range(8)}  # ~0.9 MiB
    uids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(5_000)]
    cm = render_probe_configmap(name="probes", namespace="ns", entries=entries, owner=None, opted_in=uids)
    assert _data_size(cm) <= MAX_PROBE_CONFIG_BYTES
    doc = json.loads(cm["data"][PROBE_CONFIG_KEY])
    assert "policiesOmitted" not in doc and sorted(doc["policies"]) == sorted(entries)
    assert doc["optedInOmitted"] > 0 and len(doc["optedIn"]) + doc["optedInOmitted"] == len(uids)
    assert doc["optedIn"] == sorted(uids)[: len(doc["optedIn"])]
