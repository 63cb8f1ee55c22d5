"""Package attribution of hot-symbol rows: which package (PURL) owns each counted file or function.

The Attributor (``attribution/``) answers for a path inside a root filesystem.
This module gives it roots: for every image, the agent remembers the pid of the
last process seen on this node of each of the image's last few containers, and
reads the image's files through each ``<procRoot>/<pid>/root`` when the
aggregator's deltas are drained (on the pipeline thread, once per key and flush;
a warm answer is a dict hit per root). A row counts every container of the
image, and each container can rewrite its own package databases: the PURL is
the one every live container gives, and unknown when they disagree
(attribution/agreement.py), never the one of whichever container was seen last.

- uprobe and stack-frame keys of Go and Rust binaries are attributed per
  function (a Go binary links many modules); every other key per file;
  ``[kernel]`` keys are not attributed (no package database owns the kernel);
- when the process of an image is gone (or the events came from another
  node) and ``attribution.hostRoot`` is set, the file is read there instead,
  but only when its build-id is the one the events reported, and those
  answers are cached apart from the image's own (the host's package database
  is not the image's);
- a file the native probes resolved by PURL (native/purl_wiring.py) is known
  before any flush: ``probed`` maps (image digest, path) to the installed
  package's PURL, set by the source switch when it resolves the containers,
  so the row gets it even when the container stopped before the flush;
- a key no source claims keeps an empty purl; the store fills it from a later
  flush that knows it (``purl`` is kept from the first delta that has one);
- a file whose package's database also lists a ``.jar`` (a JNI library's JAR) adds
  one 0-call ``listed`` row of that JAR to the drain (agent/listed_jars.py), once
  per image and package; a file the PURL probes resolved too (its JAR read as
  for any file, its purl the probes');
- every file is opened confined to its root (canonical/rootopen.py): a
  container's symlink never leads to a host file, a FIFO or device is never
  read, and a file's build-id is read within the canonicalizer's byte budget.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import TYPE_CHECKING

from stellaops_runtime.adapter.common import KERNEL_MODULE
from stellaops_runtime.agent.listed_jars import ListedJars
from stellaops_runtime.canonical.elflayout import ElfError, file_build_id
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS
from stellaops_runtime.canonical.proc_identity import Holder, holder, same_holder
from stellaops_runtime.canonical.rootopen import open_in_root
from stellaops_runtime.contracts.config import AttributionConfig
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta

if TYPE_CHECKING:  # the attributor and its package-database readers load with the first event (issue 13)
    from stellaops_runtime.attribution.attributor import AttributionStats, Attributor
    from stellaops_runtime.attribution.model import Attribution

log = logging.getLogger(__name__)

_FUNCTION_EVIDENCE = frozenset({EvidenceKind.INVOKED, EvidenceKind.ON_STACK})
_HOST_KEY_PREFIX = "host-root:"
_MAX_IMAGES_TRACKED = 100_000
_MAX_CONTAINERS_ASKED = 4  # per image: the containers noted last (one place each, however many pids)


class HotSymbolAttribution:
    """Fills ``HotSymbolDelta.purl`` (pipeline thread only)."""

    def __init__(self, config: AttributionConfig, *, proc_root: str, node_name: str) -> None:
        self._config = config
        self._attributor: Attributor | None = None
        self.proc_root = proc_root
        self.node_name = node_name
        self.host_root = config.host_root or None
        # image key -> container id -> (pid, exec_id) of its last process seen on this node (last seen last)
        self._pids: dict[str, dict[str, tuple[int, str]]] = {}
        self._host_ids: dict[str, str] = {}  # path under host_root -> its build-id ("" unreadable)
        self.outcomes: Counter[str] = Counter()  # per delta: attributed, unattributed, skipped, ...
        # (image digest, path in the image) -> PURL of files probed by PURL; replaced whole, never mutated
        self.probed: dict[tuple[str, str], str] = {}
        # ... and the JAR its package lists, read by the probes while its container ran; replaced whole
        self.probed_jars: dict[tuple[str, str], str] = {}
        self.listed = ListedJars()  # the JARs told to the store as ``listed`` rows

    def note(self, ev: RuntimeCallEvent) -> None:
        """Remember a live process of the event's image (cheap: called per event)."""
        if self._attributor is None:
            # Made with the first event, not the first key the drain attributes: the attributor's
            # modules and objects live as long as the agent, and made among a window's keys they
            # would keep the arenas of those keys resident after every flush (issue 13).
            self.attributor  # noqa: B018
        pid = ev.process.pid
        if pid > 0 and (not ev.node_name or not self.node_name or ev.node_name == self.node_name):
            pids = self._pids
            per = pids.get(ev.image_key)
            cid = ev.container.id if ev.container is not None else ""
            proc = (pid, ev.process.exec_id)
            if per is not None and per.get(cid) == proc:
                return  # the usual case: a process already remembered (order kept as first noted)
            if per is None:
                if len(pids) >= _MAX_IMAGES_TRACKED:
                    pids.clear()  # a bound, not an LRU: images come back with their next event
                per = pids[ev.image_key] = {}
            per.pop(cid, None)
            per[cid] = proc
            if len(per) > _MAX_CONTAINERS_ASKED:
                del per[next(iter(per))]

    @property
    def attributor(self) -> Attributor:
        """The Attributor, made (and its modules imported) with the first event (:meth:`note`)."""
        if self._attributor is None:
            from stellaops_runtime.attribution.attributor import Attributor

            c = self._config
            self._attributor = Attributor(
                sbom_dir=c.sbom_dir or None,
                max_images=c.max_images,
                max_entries=c.max_entries,
            )
        return self._attributor

    def fill(self, deltas: list[HotSymbolDelta]) -> None:
        """Fill the purls of ``deltas``, and add to it the ``listed`` rows of the JARs their
        packages list (after the pid recheck: a purl taken back gives none)."""
        held = self._prune_gone({d.key.image_digest for d in deltas if not d.purl})
        through: dict[str, list[HotSymbolDelta]] = {}  # image -> deltas attributed through its pids
        jars: list[tuple[HotSymbolDelta, str]] = []  # (delta, the JAR its package lists)
        for d in deltas:
            if d.purl:
                continue
            try:
                if self._fill(d, jars):
                    through.setdefault(d.key.image_digest, []).append(d)
            except Exception:  # a bug here must cost one purl, never the flush
                log.exception("attributing %s in %s failed", d.key.module, d.key.image_digest)
                self.outcomes["internal_error"] += 1
        self._recheck(held, through)
        deltas += self.listed.deltas(jars)

    def _recheck(self, held: dict[str, list[Holder]], through: dict[str, list[HotSymbolDelta]]) -> None:
        """The pids checked before the drain's reads, checked again after them (once per drain and
        pid, canonical/proc_identity.py): an image one of whose pids changed hands meanwhile may
        have been read in the newcomer's root, so its purls of this drain are taken back (the store
        fills them from a later flush) and the pid is forgotten."""
        for image, ds in through.items():
            changed = {h.pid for h in held.get(image, ()) if not same_holder(h, proc_root=self.proc_root)}
            if not changed:
                continue
            per = self._pids.get(image, {})
            for cid in [cid for cid, (p, _) in per.items() if p in changed]:
                del per[cid]
            if not per:
                self._pids.pop(image, None)
            for d in ds:
                d.purl = ""
                self.outcomes["attributed"] -= 1
                self.outcomes["pid_reused"] += 1

    def _fill(self, d: HotSymbolDelta, jars: list[tuple[HotSymbolDelta, str]]) -> bool:
        """Fill ``d.purl`` (and note in ``jars`` the JAR its package lists); True when the answer
        was read through the image's processes' roots."""
        k = d.key
        if (known := self.probed.get((k.image_digest, k.module))) is not None:
            d.purl = known
            self.outcomes["attributed"] += 1
            if jar := self.probed_jars.get((k.image_digest, k.module)):  # its container may be gone now
                jars.append((d, jar))
            else:
                self._probed_jar(d, jars)
            return False
        if not k.module or k.module == KERNEL_MODULE or not k.module.startswith("/"):
            self.outcomes["skipped"] += 1
            return False
        per = self._pids.get(k.image_digest)
        att: Attribution | None = None
        if per:
            roots = [f"{self.proc_root}/{p}/root" for p, _ in reversed(per.values())]
            att = self._ask(k.image_digest, roots, d)
            if att.error and not any(os.path.isdir(r) for r in roots):  # all gone since the prune
                att = None
        through = att is not None
        if (
            att is None
            and self.host_root is not None
            and d.build_id
            and self._host_matches(k.module, d.build_id)
        ):
            att = self._ask(_HOST_KEY_PREFIX + k.image_digest, [self.host_root], d)
        if att is None:
            self.outcomes["no_root"] += 1
            return False
        if att.purl:
            d.purl = att.purl
            self.outcomes["attributed"] += 1
            if att.jar and att.scope == "file":
                jars.append((d, att.jar))
            return through
        self.outcomes["unattributed"] += 1
        return False

    def _probed_jar(self, d: HotSymbolDelta, jars: list[tuple[HotSymbolDelta, str]]) -> None:
        """Note the JAR the package of a file the PURL probes resolved lists, read through the
        image's processes as for any file (by file, cached per root; its purl stays the probes'):
        a probed JNI library's package holds Java code no probe watches."""
        per = self._pids.get(d.key.image_digest)
        if not per:
            return
        from stellaops_runtime.attribution.agreement import attribute_in_roots

        roots = [f"{self.proc_root}/{p}/root" for p, _ in reversed(per.values())]
        att = attribute_in_roots(
            self.attributor, image_digest=d.key.image_digest, roots=roots, path=d.key.module
        )
        if att.purl and att.jar and att.scope == "file":
            jars.append((d, att.jar))

    def _prune_gone(self, images: set[str]) -> dict[str, list[Holder]]:
        """Forget the processes of ``images`` that are gone: once per drain and image, not per key
        (a root that goes away during the drain is left out by attribute_in_roots itself). A pid
        now held by a younger process is gone too: its root is another program's, maybe another
        container's (canonical/proc_identity.py), and its packages are not the image's; so is one
        whose exec_id names another pid (its holder cannot be told from a newcomer). The holders
        kept, by image, are checked again after the drain's reads (:meth:`_recheck`)."""
        held: dict[str, list[Holder]] = {}
        for image in images:
            per = self._pids.get(image)
            if per is None:
                continue
            for cid, (p, exec_id) in list(per.items()):
                if not os.path.isdir(f"{self.proc_root}/{p}/root"):
                    del per[cid]
                    continue
                h = holder(p, exec_id, proc_root=self.proc_root)
                if h.reused or h.other_pid is not None:
                    del per[cid]
                    self.outcomes["pid_reused" if h.reused else "pid_unverified"] += 1
                else:
                    held.setdefault(image, []).append(h)
            if not per:
                del self._pids[image]
        return held

    def _ask(self, image: str, roots: list[str], d: HotSymbolDelta) -> Attribution:
        from stellaops_runtime.attribution.agreement import attribute_in_roots

        k = d.key
        fn = k.function_name
        function = fn if k.evidence in _FUNCTION_EVIDENCE and fn and not fn.startswith("0x") else None
        return attribute_in_roots(
            self.attributor,
            image_digest=image,
            roots=roots,
            path=k.module,
            function=function,
            build_id=d.build_id,
        )

    def _host_matches(self, module: str, build_id: str) -> bool:
        assert self.host_root is not None
        path = module
        have = self._host_ids.get(path)
        if have is None:
            try:
                fd, _ = open_in_root(self.host_root, module)
                with os.fdopen(fd, "rb") as f:
                    have = file_build_id(f, max_bytes=DEFAULT_LIMITS.max_file_bytes)[0]
            except (OSError, ElfError):
                have = ""
            if len(self._host_ids) >= 65_536:
                self._host_ids.clear()
            self._host_ids[path] = have
        if have != build_id:
            self.outcomes["host_root_build_id_mismatch"] += 1
            return False
        return True

    @property
    def stats(self) -> AttributionStats | None:
        """The Attributor's counters; None until a key needed it (every counter still 0)."""
        return self._attributor.stats if self._attributor is not None else None
