"""The registry as the pipeline thread reads it: an immutable snapshot, replaced whole.

The lifecycle observer mutates its registry on the agent's event loop; the
pipeline reads container facts on its own thread, per event. Instead of a
lock, the observer's side builds a fresh :class:`ContainerLookup` after every
change and assigns it to ``Pipeline.container_lookup``: a reader holds either
the old snapshot or the new one, never a half-made one, and nothing it holds
is mutated afterwards (only the shared :class:`EnrichStats` counters, which
the pipeline thread alone writes). A new object per change also tells the
fast path (agent/fastpath.py) that outcomes computed with the old one no
longer hold.

Two indexes: the cgroup id of every container whose task runs or ran (what
a native eBPF event carries), and the container id cut to Tetragon's 31 characters (what
Tetragon's ``process.docker`` carries) of every container the runtime has.
:meth:`ContainerLookup.enrich` fills what a Tetragon event lacks (image
digest, image reference, container name, pod namespace and name) from the
registry and never overwrites what Tetragon gave, but for one thing: a digest
that is the config digest of the container's image (the CRI's image id of an
image with no repo digest), or another manifest of that config (the CRI's
repo digest of another image of it: lifecycle/image_aliases.py), is replaced
by the registry's manifest digest, so one image is filed under one key
(lifecycle/image_config.py). Light on purpose
(no gRPC, no Prometheus): the pipeline imports it.

The pod an entry hands out carries what the pod opt-out (privacy/optout.py)
reads: the pod's uid, and, gathered over every container of the pod (the CRI
sandbox holds them), the ``stellaops.io/observe-level`` annotation and the
``stellaops.io/observe-off`` label, nothing else of the pod's labels or
annotations. So an event of the agent's own probes, which knows only its
cgroup, is dropped for a pod that opted out when it was created; so is a
Tetragon event that carries no ``stellaops.io/observe-level`` annotation
(Tetragon without ``--enable-pod-annotations``) of such a pod's container,
before the operator's ``observe-off`` label or list reaches the agent
(:meth:`ContainerLookup.opted_out_by_id`).

A stopped container keeps its cgroup id here until the runtime removes it.
Native records reach the decoder up to a poll interval (and any queue
backlog) after the kernel wrote them, while the runtime reports an exit
within milliseconds: answering only for running containers filed the last
records of every container, and all of a short-lived one's (a Job, an init
container), under no image, and let those of a pod that opted out through as
node events. The kernel never gives a cgroup id twice (on 64-bit, kernfs ids
are 64-bit and not reused; a restarted container gets a new directory, so a
new id), so the id of a stopped container names nothing else; should two
records claim one id, the container that runs wins. For the same reason the
containers the runtime removed (``departed``: ContainerRegistry.departed,
``docker run --rm`` removes a container right after its exit) are indexed
too, below every container the runtime still has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stellaops_runtime.contracts.events import ContainerInfo, PodInfo, RuntimeCallEvent
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, OBSERVE_OFF_LABEL, opts_out
from stellaops_runtime.lifecycle.registry import ContainerRecord

ID_PREFIX = 31  # Tetragon keeps 31 characters of a container id (hotsymbols/gaps.py says why)
_INDEXED = ("created", "running", "paused")
_RAN = "stopped"  # indexed by cgroup too, below any container that runs (see the module docstring)


def _copy(c: ContainerInfo) -> ContainerInfo:
    """A copy for a caller (positional: several times faster than dataclasses.replace)."""
    return ContainerInfo(c.id, c.runtime, c.name, c.image_ref, c.image_id, c.image_digest, c.cgroup_id)


@dataclass(frozen=True, slots=True)
class _Entry:
    container: ContainerInfo  # never handed out: callers get copies
    pod_namespace: str
    pod_name: str
    pod_uid: str = ""
    pod_labels: tuple[tuple[str, str], ...] = ()  # only OBSERVE_OFF_LABEL
    pod_annotations: tuple[tuple[str, str], ...] = ()  # only OBSERVE_LEVEL_ANNOTATION
    opted_out: str = ""  # "annotation" when the pod's annotation opts it out (privacy/optout.py)
    image_config: str = ""  # the config digest of the container's image (ContainerRecord.image_config)
    image_aliases: frozenset[str] = frozenset()  # its other manifests (ContainerRecord.image_aliases)

    def pod(self) -> PodInfo | None:
        if not (self.pod_namespace or self.pod_name or self.pod_uid):
            return None
        return PodInfo(
            namespace=self.pod_namespace,
            name=self.pod_name,
            uid=self.pod_uid,
            labels=dict(self.pod_labels),
            annotations=dict(self.pod_annotations),
        )


def _opted_out(annotations: tuple[tuple[str, str], ...]) -> str:
    """``annotation`` when the pod's recorded annotation opts it out, else ``""``.

    Not the recorded ``observe-off`` label: the operator writes that label after the
    pod's creation, so one in the record was set by hand, which the operator removes
    (it is no opt-out), and a Tetragon event carries the pod's current labels.
    """
    return "annotation" if any(k == OBSERVE_LEVEL_ANNOTATION and opts_out(v) for k, v in annotations) else ""


def _pod_keys(records: list[ContainerRecord]) -> dict[str, tuple[tuple[tuple[str, str], ...], ...]]:
    """Pod uid -> (labels, annotations) the opt-out reads, gathered from every container of the pod.

    The sandbox is the one that has them; a container's own spec annotation
    counts too (containerd passes pod annotations into it when configured to).
    A value opting out wins over one that does not, whichever container holds it.
    """
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    for r in records:
        uid = r.pod_uid
        if not uid:
            continue
        off = r.labels.get(OBSERVE_OFF_LABEL) if r.is_sandbox else None
        if off is not None and labels.get(uid) != "true":
            labels[uid] = off
        for source in (r.pod_annotations, r.annotations):
            level = source.get(OBSERVE_LEVEL_ANNOTATION)
            if level is not None and (uid not in annotations or not opts_out(annotations[uid])):
                annotations[uid] = level
    out: dict[str, tuple[tuple[tuple[str, str], ...], ...]] = {}
    for uid in labels.keys() | annotations.keys():
        out[uid] = (
            ((OBSERVE_OFF_LABEL, labels[uid]),) if uid in labels else (),
            ((OBSERVE_LEVEL_ANNOTATION, annotations[uid]),) if uid in annotations else (),
        )
    return out


@dataclass(slots=True)
class EnrichStats:
    """Tetragon events given a missing field, by field (written on the pipeline thread only)."""

    fields: dict[str, int] = field(default_factory=lambda: {"image_digest": 0, "pod": 0})
    events: int = 0


class ContainerLookup:
    """Container facts by cgroup id or container id: one registry snapshot, never changed."""

    __slots__ = ("_by_cgroup", "_by_id", "stats")

    def __init__(
        self,
        records: Iterable[ContainerRecord] = (),
        runtime: str = "",
        *,
        stats: EnrichStats | None = None,
        departed: Iterable[ContainerRecord] = (),
    ) -> None:
        """``departed``: containers the runtime removed (ContainerRegistry.departed), named by their
        cgroup and id only where no container the runtime has claims them."""
        self.stats = stats if stats is not None else EnrichStats()
        by_cgroup: dict[int, _Entry] = {}
        stopped: dict[int, _Entry] = {}
        by_id: dict[str, _Entry] = {}
        records = list(records)
        n_current = len(records)
        records += [r for r in departed if r.cgroup_id]
        pods = _pod_keys(records)
        for n, r in enumerate(records):
            uid = r.pod_uid
            pod_labels, pod_annotations = pods.get(uid, ((), ()))
            entry = _Entry(
                ContainerInfo(
                    id=r.container_id,
                    runtime=runtime,
                    name=r.container_name,
                    image_ref=r.image_ref,
                    image_digest=r.image_digest,
                    cgroup_id=r.cgroup_id,
                ),
                r.pod_namespace,
                r.pod_name,
                uid,
                pod_labels,
                pod_annotations,
                _opted_out(pod_annotations),
                r.image_config if r.image_digest else "",
                frozenset(r.image_aliases) if r.image_digest and r.image_config else frozenset(),
            )
            if n >= n_current:  # removed by the runtime: below everything it still has
                if r.container_id:
                    by_id.setdefault(r.container_id[:ID_PREFIX].lower(), entry)
                stopped.setdefault(r.cgroup_id, entry)
                continue
            if r.container_id:
                by_id[r.container_id[:ID_PREFIX].lower()] = entry
            if r.cgroup_id and r.pid and r.status in _INDEXED:
                by_cgroup[r.cgroup_id] = entry
            elif r.cgroup_id and r.status == _RAN:
                stopped[r.cgroup_id] = entry
        for cgroup_id, entry in stopped.items():
            by_cgroup.setdefault(cgroup_id, entry)
        self._by_cgroup = by_cgroup
        self._by_id = by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def same_as(self, other: ContainerLookup | None) -> bool:
        """Whether ``other`` holds exactly these facts (then there is no need to replace it)."""
        return other is not None and self._by_id == other._by_id and self._by_cgroup == other._by_cgroup

    # -- the pipeline's side --------------------------------------------------------

    def by_cgroup(self, cgroup_id: int) -> ContainerInfo | None:
        """The container whose task runs, or ran, in cgroup ``cgroup_id`` (a copy), or None."""
        e = self._by_cgroup.get(cgroup_id)
        return _copy(e.container) if e is not None else None

    def pod_by_cgroup(self, cgroup_id: int) -> PodInfo | None:
        """The pod of that container (namespace, name, uid and what the opt-out reads), or None."""
        e = self._by_cgroup.get(cgroup_id)
        return e.pod() if e is not None else None

    def pod_by_container_id(self, container_id: str) -> PodInfo | None:
        """The pod of the container whose id starts like ``container_id`` (as :meth:`by_container_id`)."""
        e = self._by_id.get(container_id[:ID_PREFIX].lower()) if container_id else None
        return e.pod() if e is not None else None

    def opted_out_by_id(self, container_id: str) -> str:
        """``annotation`` when the runtime's record of that container's pod has an annotation that
        opts it out, else ``""``: one look-up, for events whose source sent no annotation
        (Tetragon without ``--enable-pod-annotations``), privacy/optout.OptOut.drops."""
        e = self._by_id.get(container_id[:ID_PREFIX].lower()) if container_id else None
        return e.opted_out if e is not None else ""

    def by_container_id(self, container_id: str) -> ContainerInfo | None:
        """The container whose id starts with ``container_id``'s first 31 characters (a copy), or None."""
        e = self._by_id.get(container_id[:ID_PREFIX].lower()) if container_id else None
        return _copy(e.container) if e is not None else None

    def enrich(self, ev: RuntimeCallEvent) -> bool:
        """Fill what ``ev`` lacks from its container's registry entry; True when something was filled."""
        c = ev.container
        if c is None or not c.id:
            return False
        if c.image_digest and ev.pod is not None:
            if not self._one_key(c):
                return False
            self.stats.events += 1
            return True
        e = self._by_id.get(c.id[:ID_PREFIX].lower())
        if e is None:
            return False
        known = e.container
        filled = self._one_key(c, e)
        if not c.image_digest and known.image_digest:
            c.image_digest = known.image_digest
            if not c.image_ref:
                c.image_ref = known.image_ref
            self.stats.fields["image_digest"] += 1
            filled = True
        if ev.pod is None and (pod := e.pod()) is not None:
            ev.pod = pod
            self.stats.fields["pod"] += 1
            filled = True
        if filled:
            if not c.name:
                c.name = known.name
            if not c.runtime:
                c.runtime = known.runtime
            if not c.cgroup_id:
                c.cgroup_id = known.cgroup_id
            self.stats.events += 1
        return filled

    def _one_key(self, c: ContainerInfo, e: _Entry | None = None) -> bool:
        """File an event that names its container's image by the config digest (Tetragon's image id
        of an image with no repo digest: the CRI's image id) under the registry's manifest digest,
        the key the agent's own probes and the lifecycle windows use; True when rewritten. Only the
        config digest of that container's own image, or another manifest of that config
        (lifecycle/image_aliases.py: kubelet may name the image by any), is rewritten: any other
        digest is kept."""
        if e is None:
            e = self._by_id.get(c.id[:ID_PREFIX].lower())
            if e is None:
                return False
        d = c.image_digest
        if not e.image_config or d == e.container.image_digest:
            return False
        if d != e.image_config and d not in e.image_aliases:
            return False
        c.image_digest = e.container.image_digest
        self.stats.fields["image_digest"] += 1
        return True
