"""Events of the agent's own BCC probes kept only for the pods a policy selects, as on Tetragon nodes.

The native probes are loaded node-wide: the kernel cannot tell a pod's labels,
so every probe a policy asks for fires in every container. On a Tetragon node
the same policy reaches only the pods its rendered TracingPolicies select. So
the pipeline thread drops, right after the opt-out drop (agent/pipeline.py),
each native event whose probe no policy selecting its pod asks for:

- a syscall event (kind ``syscall``) needs a policy naming that syscall, a TCP
  state event (``sock/inet_sock_set_state``) one with ``tcpState``, a function
  event (``uprobe``) one naming that function (by ``binaryPath`` or by
  ``purl``, the file the agent resolved it to) **and** the pod labelled
  ``stellaops.io/observe-deep=true``; the policy selects the pod when the pod
  is in its namespace (ObservationPolicy) or in a namespace its
  ``namespaceSelector`` matches (ClusterObservationPolicy) and its
  ``podSelector`` (which holds ``stellaops.io/observe=true``) matches the
  pod's labels as the pod view last listed them (agent/pod_view.py);
- a syscall event kept for a pod keeps its kernel (user) stack only when the
  pod is labelled ``stellaops.io/observe-deep=true`` and a selecting policy
  naming the syscall asks for kernel (user) stack traces: Tetragon's stack
  object selects only such pods (``stacks_removed`` counts the others);
- process events (exec, exit) and USDT events are kept for every pod: the
  base sensor is node-wide on Tetragon nodes too (Passive), and no policy
  renders USDT probes; so are events of a probe the agent's own ``native``
  configuration asks for (a hand-written agent config is node-wide by intent);
- an event of no pod (a host process, a container the lifecycle observer does
  not know, a TCP change no task owns) is dropped (``no_pod``): a podSelector
  never matches a host process; one of a pod no policy asking for the probe
  selects as ``not_selected``; one of a pod the view does not list (yet: it
  relists every few seconds, and a new pod's first calls come before) is
  **kept** whole and counted in ``kept_unlisted``: whether a policy selects it
  is not known yet, and a call that ran is never lost for want of a label
  (a count kept for a pod no policy selects is still a true count).

A drop from a pod no policy watches at all (``no_pod``, or a pod selected by
no policy: ``dropped_unwatched``) makes its image's window a gap (source
``not_selected``, hotsymbols/gaps.py): a pod of the image ran unwatched, so a
watched pod of it must not back a "not observed" alone. A pod selected by a
policy that asks for other probes is watched at what its kept events show, as
on a Tetragon node, and its drops mark nothing: else a policy asking for a
syscall in one app's pods would leave every other app's image unknown.

Without a pod view (no Kubernetes API configured or reached yet) nothing is
dropped: the probes stay node-wide, as before, and ``pod_view_active`` says
so. A view, once listed, is kept while the API is unreachable (stale labels
rather than none). The policies come from the probe ConfigMap file
(``native.probeConfigFile``), looked at once a second like the opt-out list
(agent/optout_watch.py); a file that cannot be read or parsed keeps the last
policies read.

The pod view and the PURL owners are snapshots swapped whole by the event
loop (like ``Pipeline.container_lookup``); the pipeline thread reads each
once per event and caches, per snapshot, which policies select a pod.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from stellaops_runtime.agent.native_selection_policies import (
    DEEP_LABEL,
    SelectionPolicy,
    parse_policies,
    pod_match_labels,
)
from stellaops_runtime.agent.watched_file import Missing, WatchedFile
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent
from stellaops_runtime.native.config import NativeConfig, NativeConfigError
from stellaops_runtime.native.policy_config import DEFAULT_HOST_ROOT, MAX_FILE_BYTES, parse_payload
from stellaops_runtime.store.name_spellings import entry_clone_of

log = logging.getLogger(__name__)

SOURCE = "bcc"  # native.events.SOURCE (not imported: that module is loaded only where BCC runs)
SYSCALL_PREFIX = "__x64_sys_"  # native.events.SYSCALL_PREFIX
TCP_FUNCTION = "sock/inet_sock_set_state"  # contracts.tcp_state.FUNCTION_NAME
INTERVAL_SECONDS = 1.0
REASONS = ("no_pod", "not_selected")
_UNLISTED = "unlisted"  # the decision for a pod the view does not list: kept whole, not a drop reason
_NO_POLICY = "no_policy"  # a pod no policy selects at all: counted as not_selected, and unwatched
MAX_CACHED = 65_536  # (pod, probe) decisions kept; cleared whole when full or when an input changes

Owners = Mapping[tuple[str, str], frozenset[str]]  # (module, symbol) -> policy keys


@dataclass(frozen=True, slots=True)
class ViewPod:
    uid: str
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted


class PodView:
    """The pods of this node and the labels of namespaces, as listed once: never changed afterwards."""

    __slots__ = ("_by_name", "_by_uid", "namespaces")

    def __init__(self, pods: Iterable[ViewPod], namespaces: Mapping[str, Mapping[str, str]] | None = None):
        self._by_uid = {p.uid: p for p in pods if p.uid}
        self._by_name = {(p.namespace, p.name): p for p in self._by_uid.values()}
        self.namespaces = {k: dict(v) for k, v in (namespaces or {}).items()}

    def __len__(self) -> int:
        return len(self._by_uid)

    def same_as(self, other: PodView | None) -> bool:
        return other is not None and self._by_uid == other._by_uid and self.namespaces == other.namespaces

    def pod(self, uid: str, namespace: str = "", name: str = "") -> ViewPod | None:
        """By uid when the event has one (a re-created pod of the same name is another), else by name."""
        if uid:
            return self._by_uid.get(uid)
        return self._by_name.get((namespace, name)) if namespace and name else None


def selecting(
    policies: Iterable[SelectionPolicy], pod: ViewPod, namespace_labels: Mapping[str, str] | None
) -> tuple[tuple[SelectionPolicy, ...], bool]:
    """The policies whose probes reach ``pod`` (at ActiveTracing), and whether it carries the deep label."""
    labels = dict(pod.labels)
    match = pod_match_labels(pod.namespace, labels)
    chosen = tuple(p for p in policies if p.selects(pod.namespace, match, namespace_labels))
    return chosen, labels.get(DEEP_LABEL) == "true"


def purl_selects(
    policies: tuple[SelectionPolicy, ...], view: PodView, pods: Mapping[str, tuple[str, str, str]]
) -> Callable[[str, str], bool]:
    """(policy key, container id) -> whether that policy's functions reach the container's pod.

    ``pods`` maps container id to its pod's (uid, namespace, name). A function
    needs the pod selected at ActiveTracing and labelled ``observe-deep``, as
    the rendered uprobe object requires; a container of no pod is selected by
    no policy. A container of a pod the view does not list yet is selected by
    every policy, as without a pod view (its labels are unknown; its calls are
    kept, ``NativeSelection.drops``), until a listing says otherwise.
    """
    cache: dict[tuple[str, str, str], tuple[frozenset[str], bool] | None] = {}

    def selects(policy: str, container_id: str) -> bool:
        ident = pods.get(container_id)
        if ident is None or not (ident[0] or ident[2]):  # a container of no pod (no uid, no name)
            return False
        if ident not in cache:
            pod = view.pod(*ident)
            if pod is None:
                cache[ident] = None
            else:
                chosen, deep = selecting(policies, pod, view.namespaces.get(pod.namespace))
                cache[ident] = (frozenset(p.key for p in chosen), deep)
        got = cache[ident]
        if got is None:  # not listed yet: every policy, as without a view
            return True
        keys, deep = got
        return deep and policy in keys

    return selects


def load_policies(path: str, *, host_root: str = DEFAULT_HOST_ROOT) -> tuple[SelectionPolicy, ...]:
    """The usable policies of the probe ConfigMap file; raises NativeConfigError (or OSError)."""
    with open(path, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    return parse_policies(parse_payload(raw, source=path), host_root=host_root)[0]


def asks(policy: SelectionPolicy, ev: RuntimeCallEvent, deep: bool, owners: Owners | None) -> bool:
    """Whether ``policy`` (selecting the event's pod) asks for the probe that gave ``ev``."""
    kind = ev.kind
    if kind is EventKind.SYSCALL:
        return ev.function_name.removeprefix(SYSCALL_PREFIX) in policy.syscalls
    if kind is EventKind.TRACEPOINT:
        return policy.tcp_state and ev.function_name == TCP_FUNCTION
    if not deep:  # functions need stellaops.io/observe-deep=true, as their rendered object does
        return False
    key = (ev.module, ev.function_name)
    if key in policy.paths or _clone_key(key, policy.paths) is not None:
        return True  # a binaryPath function, or an entry clone of it probed beside it (host_tails.py)
    if owners is not None and key in owners:
        return policy.key in owners[key]
    return False


def node_wide_probes(base: NativeConfig | None) -> frozenset[tuple[str, str]]:
    """(kind, name) of the probes the agent's own ``native`` settings ask for: kept for every pod."""
    if base is None:
        return frozenset()
    out = {("syscall", s) for s in base.syscalls}
    out |= {("uprobe", f"{t.module or t.binary}\x00{t.symbol}") for t in base.uprobes}
    if base.tcp_state:
        out.add(("tcp", TCP_FUNCTION))
    return frozenset(out)


def _clone_bases(name: str) -> Iterator[str]:
    """The names ``name`` is an entry clone of (``crc32`` for ``crc32.isra.0``:
    name_spellings.entry_clone_of): the BCC probes probe a node file's clones beside the function
    (native/host_tails.py), and such a call is the function's."""
    at = name.find(".")
    while at > 0:
        if entry_clone_of(name, name[:at]):
            yield name[:at]
        at = name.find(".", at + 1)


def _clone_key(key: tuple[str, str], known: AbstractSet[tuple[str, str]]) -> tuple[str, str] | None:
    """(module, function) in ``known`` of which ``key`` names an entry clone (:func:`_clone_bases`)."""
    module, name = key
    return next((b for b in ((module, base) for base in _clone_bases(name)) if b in known), None)


def probe_is_node_wide(probe: tuple[str, str], node_wide: AbstractSet[tuple[str, str]]) -> bool:
    """Whether ``probe`` (:func:`_probe`) is one of the agent's own (:func:`node_wide_probes`), or an
    entry clone of one of its uprobes."""
    if probe in node_wide:
        return True
    if probe[0] != "uprobe" or "." not in probe[1]:
        return False
    module, _, name = probe[1].partition("\x00")
    return any(("uprobe", f"{module}\x00{base}") in node_wide for base in _clone_bases(name))


def _probe(ev: RuntimeCallEvent) -> tuple[str, str] | None:
    """The probe key of a filtered kind, None for kinds kept for every pod."""
    kind = ev.kind
    if kind is EventKind.SYSCALL:
        return "syscall", ev.function_name.removeprefix(SYSCALL_PREFIX)
    if kind is EventKind.TRACEPOINT and ev.function_name == TCP_FUNCTION:
        return "tcp", TCP_FUNCTION
    if kind is EventKind.UPROBE:
        return "uprobe", f"{ev.module}\x00{ev.function_name}"
    return None


class NativeSelection:
    """The filter the pipeline applies to native events (call ``poll`` and ``drops`` on its thread only)."""

    def __init__(
        self,
        path: str,
        base: NativeConfig | None = None,
        *,
        interval: float = INTERVAL_SECONDS,
        host_root: str = DEFAULT_HOST_ROOT,
    ) -> None:
        self.path = path
        self.host_root = host_root
        self.view: PodView | None = None  # swapped whole by the pod view (agent/pod_view.py)
        self.purl_owners: Owners | None = None  # swapped whole by the source switch (PURL wiring)
        self.policies: tuple[SelectionPolicy, ...] = ()
        self.node_wide = node_wide_probes(base)
        self.dropped: collections.Counter[str] = collections.Counter({r: 0 for r in REASONS})
        self.kept = 0  # native events of a filtered kind kept because a selecting policy asks
        # Whether the last event dropped came from a pod no policy watches (no pod, or selected by
        # none): its image's window is then a gap (agent/pipeline.py, hotsymbols/gaps.py not_selected).
        self.dropped_unwatched = False
        self.kept_unlisted = 0  # kept because their pod is not in the view yet (nothing known of its labels)
        self.stacks_removed = 0  # kept syscall events whose stacks a Tetragon node would not give
        self.bad_entries = 0  # entries of the last read left out (they select nothing)
        self.bad_entries_total = 0  # the same, summed over every read
        self._file = WatchedFile(
            path, interval=interval, max_bytes=MAX_FILE_BYTES, what="pod selection policies"
        )
        # (pod uid, namespace, name, probe) -> why such events are dropped, or the stacks they keep
        self._cache: dict[tuple[str, str, str, tuple[str, str]], str | tuple[bool, bool]] = {}
        self._cached_for: tuple[object, object, object] = (None, None, None)
        self._seen_inputs: tuple[object, object, object] = (None, None, None)

    @property
    def active(self) -> bool:
        """Whether native events are selected by pod now (else they are node-wide)."""
        return self.view is not None

    def refresh(self, now: float | None = None) -> bool:
        """Before a batch: ``poll``, and whether any input (policies, view, PURL owners) changed since."""
        self.poll(now)
        inputs = (self.policies, self.view, self.purl_owners)
        if all(a is b for a, b in zip(inputs, self._seen_inputs, strict=True)):
            return False
        self._seen_inputs = inputs
        return True

    # -- the probe ConfigMap's policies -------------------------------------------

    @property
    def read_errors(self) -> int:
        """Reads of the file that failed (the last policies kept)."""
        return self._file.errors

    def poll(self, now: float | None = None) -> bool:
        """Re-read the policies if due and the file changed; True when they changed."""
        if not self.path:
            return False
        got = self._file.poll(now)
        if got is None or isinstance(got, Missing):
            return False
        try:
            entries = parse_payload(got.raw, source=self.path)
        except NativeConfigError as e:
            self._file.refused(got.mark, str(e))
            return False
        self._file.accepted(got.mark)
        policies, bad = parse_policies(entries, host_root=self.host_root)
        self.bad_entries = len(bad)
        self.bad_entries_total += len(bad)
        for why in bad[:5]:
            log.warning("probe ConfigMap entry selects no pod: %s", why)
        if policies == self.policies:
            return False
        self.policies = policies
        return True

    # -- the per-event decision ---------------------------------------------------

    def drops(self, ev: RuntimeCallEvent) -> bool:
        """Whether to drop ``ev`` (counted by reason): see the module docstring."""
        if ev.source != SOURCE:
            return False
        view = self.view
        if view is None:
            return False
        probe = _probe(ev)
        if probe is None or probe_is_node_wide(probe, self.node_wide):
            return False
        info = ev.pod
        if info is None:
            self.dropped["no_pod"] += 1
            self.dropped_unwatched = True
            return True
        owners = self.purl_owners
        if (
            self._cached_for[0] is not view
            or self._cached_for[1] is not self.policies
            or self._cached_for[2] is not owners
        ):
            self._cache.clear()
            self._cached_for = (view, self.policies, owners)
        key = (info.uid, info.namespace, info.name, probe)
        decision = self._cache.get(key)
        if decision is None:  # not decided yet for this pod and probe
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            decision = self._cache[key] = self._decide(view, ev, info.uid, info.namespace, info.name, owners)
        if decision == _UNLISTED:
            self.kept_unlisted += 1
            return False
        if isinstance(decision, str):
            unwatched = decision == _NO_POLICY
            self.dropped["not_selected" if unwatched else decision] += 1
            self.dropped_unwatched = unwatched
            return True
        self.kept += 1
        kernel, user = decision
        if (ev.kernel_stack and not kernel) or (ev.user_stack and not user):
            self.stacks_removed += 1
            if not kernel:
                ev.kernel_stack = []
            if not user:
                ev.user_stack = []
        return False

    def _decide(
        self, view: PodView, ev: RuntimeCallEvent, uid: str, namespace: str, name: str, owners: Owners | None
    ) -> str | tuple[bool, bool]:
        """Why an event of this probe from this pod is dropped, or (kernel, user): which of its stacks
        it keeps; the same for every such event."""
        pod = view.pod(uid, namespace, name)
        if pod is None:
            return _UNLISTED
        policies, deep = selecting(self.policies, pod, view.namespaces.get(pod.namespace))
        if not policies:  # watched by no policy: only its exec and exit events are kept (Passive)
            return _NO_POLICY
        asking = [p for p in policies if asks(p, ev, deep, owners)]
        if not asking:  # watched, for other probes: as on a Tetragon node, its level is what it shows
            return "not_selected"
        if ev.kind is not EventKind.SYSCALL:
            return True, True  # TCP state and function stacks: what the probe took (Tetragon has none)
        return deep and any(p.kernel_stacks for p in asking), deep and any(p.user_stacks for p in asking)
