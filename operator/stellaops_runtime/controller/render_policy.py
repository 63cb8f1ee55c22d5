"""An ObservationPolicy rendered into Tetragon policies and into the native probes' entry.

Rules (docs/operator.md, "Rendering"):

- An ``ObservationPolicy`` renders ``TracingPolicyNamespaced`` objects in its
  namespace; a ``ClusterObservationPolicy`` renders cluster-wide
  ``TracingPolicy`` objects. Each is owned by its policy (same scope), carries
  the managed-by and ``stellaops.io/policy-*`` labels, runs in Tetragon's
  monitor mode, and selects pods by the user's podSelector **and** the level
  label of what its probes need (set by the operator from the pod's posture,
  ``posture.level_labels``): ``stellaops.io/observe=true`` for syscall
  kprobes, ``stellaops.io/observe-deep=true`` for uprobes and for syscall
  kprobes carrying stack traces.
- Syscalls (posture ActiveTracing and up) become one kprobe each in
  ``stellaops-<name>``; a syscall that only one architecture has gets
  ``ignore.callNotFound`` so the policy still loads on the other. When the
  policy asks for stack traces (EbpfDeep), the same kprobes with stack traces
  go into ``stellaops-<name>-stacks`` for pods labelled ``observe-deep``, and
  ``stellaops-<name>`` (without stacks) excludes those pods
  (``observe-deep`` DoesNotExist): each pod is hooked by exactly one of the
  two, so no call is counted twice and a pod lowered to ActiveTracing gets no
  stack traces.
- Functions with a ``binaryPath`` (EbpfDeep and up) become uprobes in a second
  object, ``stellaops-<name>-uprobes``, so a path missing on one node fails
  only that object there. The path is the node's path prefixed with where the
  node's root appears inside Tetragon's container (``tetragonHostRoot``).
- Functions named by ``purl`` are **not** rendered into Tetragon: it resolves
  uprobe paths in its own filesystem and cannot reach a file that exists only
  in a pod's image (cilium/tetragon#5105). They go to the agents' probe
  ConfigMap unresolved and are listed in ``unresolved_functions``.
- ``rateLimit`` goes on every Post action; kernel and user stack traces only
  on the syscall kprobes (Tetragon delivers stacks on kprobe events only;
  uprobe stacks never reach the event, cilium/tetragon#5695), and only when
  ``maxLevel`` is EbpfDeep or more.
- ``tcpState`` (ActiveTracing and up) becomes the tracepoint
  ``sock/inet_sock_set_state`` in ``stellaops-<name>-tcp`` for pods labelled
  ``observe``, reporting only the transitions a socket's own task makes in a
  system call (``contracts/tcp_state.py``), without rateLimit (the native probe
  applies none to TCP events either); ``tcpState: true`` in the probe entry.
- A ClusterObservationPolicy's namespaceSelector is carried into Tetragon's
  podSelector where Tetragon can express it (requirements on
  ``kubernetes.io/metadata.name`` become the pseudo-label
  ``k8s:io.kubernetes.pod.namespace``); other namespace labels are enforced
  through the observe label alone, and a note says so.

The selectors are built in controller/policy_selectors.py, the kprobe and
uprobe entries in controller/render_hooks.py, the TCP tracepoint in
controller/render_tcp.py; this module assembles the objects and the probe
entry, and renders the probe ConfigMap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stellaops_runtime.contracts.crd_names import (
    API_VERSION,
    CLUSTER_POLICY_KIND,
    DEFAULT_TETRAGON_HOST_ROOT,
    POLICY_KIND,
    POLICY_KIND_LABEL,
    POLICY_NAME_LABEL,
    POLICY_NAMESPACE_LABEL,
    TETRAGON_API_VERSION,
    TETRAGON_NAMESPACED_KIND,
    TETRAGON_POLICY_KIND,
)
from stellaops_runtime.contracts.crd_specs import PolicySpec
from stellaops_runtime.contracts.syscalls import ARM64, X86_64
from stellaops_runtime.contracts.tcp_state import LEVEL as TCP_LEVEL
from stellaops_runtime.controller.naming import (
    canonical_json,
    dns_subdomain,
    managed_labels,
    owner_reference,
    owner_reference_of,
)
from stellaops_runtime.controller.opted_out import OptedOutPod, opted_in_entries, opted_out_entries
from stellaops_runtime.controller.policy_selectors import tetragon_pod_selector, with_level
from stellaops_runtime.controller.policy_templates import load_template
from stellaops_runtime.controller.posture import Posture
from stellaops_runtime.controller.render_hooks import syscall_kprobes, uprobes
from stellaops_runtime.controller.render_tcp import tcp_policy_name, tcp_tracepoint

PROBE_CONFIG_KEY = "probes.json"  # the data key of the native probes' ConfigMap
PROBE_CONFIG_KIND = "ProbeConfig"
PURL_NOT_TRACED = (
    "named by package URL: not traced by Tetragon, which resolves uprobe paths in its own filesystem "
    "and cannot reach files inside pod images (cilium/tetragon#5105); passed to the agents' probe "
    "ConfigMap unresolved"
)


@dataclass(frozen=True, slots=True)
class RenderedPolicy:
    tracing_policies: list[dict]
    probe_entry: dict
    unresolved_functions: list[dict]
    notes: list[str]


def probe_entry_key(*, kind: str, namespace: str | None, name: str) -> str:
    """Key in the probe ConfigMap: ``<kind>/<namespace>/<name>`` (empty namespace: cluster kind)."""
    return f"{kind}/{namespace or ''}/{name}"


def tetragon_policy_names(*, name: str) -> tuple[str, str]:
    """The names of the syscall object and the uprobe object a policy called ``name`` may render."""
    return dns_subdomain("stellaops", name), dns_subdomain("stellaops", name, "uprobes")


def stacks_policy_name(*, name: str) -> str:
    """The name of the syscall object with stack traces (for pods at EbpfDeep or more)."""
    return dns_subdomain("stellaops", name, "stacks")


def _metadata(*, kind: str, name: str, namespace: str | None, uid: str, object_name: str, part: str) -> dict:
    labels = managed_labels(
        {
            POLICY_KIND_LABEL: kind,
            POLICY_NAME_LABEL: name,
            **({POLICY_NAMESPACE_LABEL: namespace} if namespace else {}),
            "stellaops.io/policy-part": part,
        }
    )
    meta: dict[str, Any] = {
        "name": object_name,
        "labels": labels,
        "annotations": {"stellaops.io/policy": probe_entry_key(kind=kind, namespace=namespace, name=name)},
        "ownerReferences": [owner_reference(api_version=API_VERSION, kind=kind, name=name, uid=uid)],
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def _skeleton(*, kind: str, name: str, namespace: str | None, uid: str, object_name: str, part: str) -> dict:
    obj = load_template("base.yaml")
    obj["apiVersion"] = TETRAGON_API_VERSION
    obj["kind"] = TETRAGON_NAMESPACED_KIND if kind == POLICY_KIND else TETRAGON_POLICY_KIND
    obj["metadata"] = _metadata(
        kind=kind, name=name, namespace=namespace, uid=uid, object_name=object_name, part=part
    )
    return obj


def render_policy(
    *, kind: str, name: str, namespace: str | None, uid: str, spec: PolicySpec
) -> RenderedPolicy:
    """Tetragon objects, the native probes' entry, unresolved (PURL) functions and notes for one policy."""
    if kind not in (POLICY_KIND, CLUSTER_POLICY_KIND):
        raise ValueError(f"not a policy kind: {kind!r}")
    cluster = kind == CLUSTER_POLICY_KIND
    if not cluster and not namespace:
        raise ValueError("an ObservationPolicy renders into its namespace; namespace is required")
    namespace = None if cluster else namespace
    level = Posture(spec.max_level)
    notes: list[str] = []
    pod_selector = tetragon_pod_selector(spec, cluster=cluster, notes=notes)

    tracing = level >= Posture.ACTIVE_TRACING
    deep = level >= Posture.EBPF_DEEP
    syscalls = sorted(spec.syscalls) if tracing else []
    path_functions = [f for f in spec.functions if f.binary_path is not None] if deep else []
    purl_functions = [f for f in spec.functions if f.purl is not None] if deep else []
    stacks = {"kernel": spec.stack_traces.kernel and deep, "user": spec.stack_traces.user and deep}

    if not tracing and (spec.syscalls or spec.functions):
        notes.append(f"maxLevel {level}: syscalls and functions are not traced (they need ActiveTracing)")
    elif not deep and spec.functions:
        notes.append(f"maxLevel {level}: functions are not traced (uprobes need EbpfDeep)")
    if not deep and (spec.stack_traces.kernel or spec.stack_traces.user):
        notes.append(f"maxLevel {level}: stack traces are off (they need EbpfDeep)")
    tcp = spec.tcp_state and level >= TCP_LEVEL
    if spec.tcp_state and not tcp:
        notes.append(f"maxLevel {level}: tcpState is off (the tracepoint needs {TCP_LEVEL})")

    syscall_name, uprobe_name = tetragon_policy_names(name=name)
    objects: list[dict] = []
    if syscalls:
        with_stacks = stacks["kernel"] or stacks["user"]
        plain = syscall_kprobes(syscalls, spec, stacks={"kernel": False, "user": False}, notes=notes)
        obj = _skeleton(
            kind=kind, name=name, namespace=namespace, uid=uid, object_name=syscall_name, part="syscalls"
        )
        obj["spec"]["podSelector"] = with_level(
            pod_selector, Posture.ACTIVE_TRACING, below=Posture.EBPF_DEEP if with_stacks else None
        )
        obj["spec"]["kprobes"] = plain
        objects.append(obj)
        if with_stacks:
            obj = _skeleton(
                kind=kind,
                name=name,
                namespace=namespace,
                uid=uid,
                object_name=stacks_policy_name(name=name),
                part="syscalls-stacks",
            )
            obj["spec"]["podSelector"] = with_level(pod_selector, Posture.EBPF_DEEP)
            obj["spec"]["kprobes"] = syscall_kprobes(syscalls, spec, stacks=stacks, notes=None)
            objects.append(obj)
    elif tracing and not path_functions and not tcp:
        notes.append(
            "nothing for Tetragon to trace: the policy names no syscalls and no binaryPath functions"
        )

    if path_functions:
        if spec.stack_traces.user and deep:
            notes.append(
                "user stack traces are not requested on uprobes: Tetragon drops them from uprobe events "
                "(cilium/tetragon#5695); the syscall kprobes carry them"
            )
        obj = _skeleton(
            kind=kind, name=name, namespace=namespace, uid=uid, object_name=uprobe_name, part="uprobes"
        )
        obj["spec"]["podSelector"] = with_level(pod_selector, Posture.EBPF_DEEP)
        obj["spec"]["uprobes"] = uprobes(path_functions, spec)
        objects.append(obj)

    if tcp:
        obj = _skeleton(
            kind=kind, name=name, namespace=namespace, uid=uid, object_name=tcp_policy_name(name=name),
            part="tcp-state",
        )  # fmt: skip
        obj["spec"]["podSelector"] = with_level(pod_selector, TCP_LEVEL)
        obj["spec"]["tracepoints"] = [tcp_tracepoint()]
        objects.append(obj)
        if spec.rate_limit:
            notes.append(
                "rateLimit is not applied to TCP state events (on Tetragon it would compare each "
                "event's arguments, on native probes it is not applied to them)"
            )

    unresolved = [
        {"purl": f.purl, "symbols": sorted(f.symbols), "message": PURL_NOT_TRACED}
        for f in sorted(purl_functions, key=lambda f: f.purl or "")
    ]
    if unresolved:
        notes.append(f"{len(unresolved)} function(s) named by purl are passed to the agents unresolved")

    functions: list[dict[str, Any]] = []
    for f in sorted(path_functions, key=lambda f: f.binary_path or ""):
        functions.append({"binaryPath": f.binary_path, "symbols": sorted(f.symbols)})
    for f in sorted(purl_functions, key=lambda f: f.purl or ""):
        functions.append({"purl": f.purl, "symbols": sorted(f.symbols), "resolved": False})
    probe_entry = {
        "kind": kind,
        "namespace": namespace or "",
        "name": name,
        "maxLevel": level.value,
        "podSelector": with_level(pod_selector, Posture.ACTIVE_TRACING),
        "namespaceSelector": spec.namespace_selector.to_dict()
        if cluster and spec.namespace_selector
        else None,
        "syscalls": [{"name": sc, "x86_64": X86_64.get(sc), "arm64": ARM64.get(sc)} for sc in syscalls],
        "functions": functions,
        "stackTraces": stacks,
        "rateLimit": spec.rate_limit,
        "rateLimitSeconds": spec.rate_limit_seconds,
        "tetragonPolicies": [o["metadata"]["name"] for o in objects],
    }
    if tcp:
        probe_entry["tcpState"] = True
    if path_functions and spec.tetragon_host_root not in ("", DEFAULT_TETRAGON_HOST_ROOT):
        # Tetragon names these files <root><binaryPath>: the agents' switch back from their own
        # probes must know that name, or it counts Tetragon's cached calls of them again
        probe_entry["tetragonHostRoot"] = spec.tetragon_host_root
    return RenderedPolicy(
        tracing_policies=objects, probe_entry=probe_entry, unresolved_functions=unresolved, notes=notes
    )


# A ConfigMap's data holds at most 1 MiB (the API server refuses more, and a refused write froze
# the agents' copy: no new opt-out, no new policy, no policy deletion finished). The opted-out list
# has its own budget (opted_out.py); policy entries fill what is left, smallest first.
MAX_PROBE_CONFIG_BYTES = (1 << 20) - (16 << 10)
# In the status notes of a policy whose entry was left out (reconcile_policies.py).
OMITTED_NOTE = (
    "its probe entry does not fit in the agents' probe ConfigMap (1 MiB with the other policies' "
    "entries and the opted-out pods; the largest are left out): the native probes do not cover "
    "this policy (Tetragon nodes still load its TracingPolicies)"
)


def _fitting_entries(entries: Mapping[str, dict], budget: int) -> tuple[dict[str, dict], list[str]]:
    """The entries that fit in ``budget`` bytes of payload (smallest first), and the keys left out, sorted.

    Smallest first: a policy too big for what is left is the one that gives way, never
    the many small ones beside it.
    """
    sizes = {key: len(canonical_json({key: entries[key]}).encode("utf-8")) for key in entries}
    kept: list[str] = []
    used = 0
    for key in sorted(entries, key=lambda k: (sizes[k], k)):
        if used + sizes[key] + 1 > budget:
            continue
        kept.append(key)
        used += sizes[key] + 1
    left_out = sorted(set(entries) - set(kept))
    return {key: entries[key] for key in sorted(kept)}, left_out


# The bytes ``"optedIn":[],"optedInOmitted":<count>,`` add besides the uids themselves.
_OPTED_IN_KEYS_BYTES = 64


def render_probe_configmap(
    *,
    name: str,
    namespace: str,
    entries: Mapping[str, dict],
    owner: Mapping[str, Any] | None,
    opted_out: Iterable[OptedOutPod] = (),
    opted_in: Iterable[str] = (),
) -> dict:
    """The one ConfigMap the native probes read: every policy's probe entry keyed by ``probe_entry_key``.

    It also lists the pods opted out by their annotation (``optedOut``: uid,
    namespace and name, sorted; absent when there is none), which every agent
    drops the events of whatever their source (privacy/optout.py), and the
    uids of the pods whose annotation names a level (``optedIn``, sorted; absent
    when there is none; in the room the policies leave, the rest counted in
    ``optedInOmitted``), which speak over the container runtime's record of a
    pod created opted out (controller/opted_out.py). Policy
    entries beyond ``MAX_PROBE_CONFIG_BYTES`` are left out, largest first, and
    their keys listed in ``policiesOmitted``. The payload
    is canonical JSON (sorted keys, no whitespace) so unchanged entries give a
    byte-identical ConfigMap and the handler sends no write.
    """
    payload: dict[str, Any] = {"apiVersion": API_VERSION, "kind": PROBE_CONFIG_KIND, "policies": {}}
    listed, omitted = opted_out_entries(opted_out)
    if listed:
        payload["optedOut"] = listed
    if omitted:
        payload["optedOutOmitted"] = omitted
    room = MAX_PROBE_CONFIG_BYTES - len(canonical_json(payload).encode("utf-8"))
    kept, left_out = _fitting_entries(entries, room)
    payload["policies"] = kept
    if left_out:
        payload["policiesOmitted"] = left_out
    # optedIn takes what the policies leave (a pod left out stays as the runtime's record says: a gap)
    room = MAX_PROBE_CONFIG_BYTES - len(canonical_json(payload).encode("utf-8")) - _OPTED_IN_KEYS_BYTES
    at_level, omitted_in = opted_in_entries(opted_in, max_bytes=room)
    if at_level:
        payload["optedIn"] = at_level
    if omitted_in:
        payload["optedInOmitted"] = omitted_in
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": managed_labels({"app.kubernetes.io/component": "probe-config"}),
    }
    if owner is not None:
        meta["ownerReferences"] = [owner_reference_of(owner)]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {PROBE_CONFIG_KEY: canonical_json(payload)},
    }
