"""The per-event path: decode -> adapter -> privacy -> frame canonicalizer -> hot-symbol bridge.

Package attribution (agent/purls.py) runs when the bridge is drained, once
per key and flush, not per event. Tetragon's own drop signals (throttles,
rate-limit reports) go to the gap tracker (hotsymbols/gaps.py) after each
batch, and its gaps join the observation windows at drain.

Synchronous and allocation-light on purpose: the agent calls it on batches
taken from the receive queue, and the benchmark calls the very same methods,
so what is measured is what runs. The one thing it never does inline is parse
a binary: the frame canonicalizer (built by agent/canonicalizer_setup.py)
hands that to its parse-worker thread and a batch waits at most
``symbols.parseWaitMilliseconds`` for it; a frame whose file is still being
parsed is counted with module + offset (``parse_pending``).
Latency is measured from the moment the receiver queued an event to the end
of the batch that aggregated it (one clock read per batch, agent/latency.py).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from stellaops_runtime.adapter import from_proto, proto_parts, validate
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.adapter.python_usdt import Outcome, PythonFunctions
from stellaops_runtime.agent.canonicalizer_setup import make_canonicalizer
from stellaops_runtime.agent.fastpath import FastPath
from stellaops_runtime.agent.latency import LatencyHistogram
from stellaops_runtime.agent.native_hold import NativeHold
from stellaops_runtime.agent.optout_watch import OptOutWatch
from stellaops_runtime.agent.purls import HotSymbolAttribution
from stellaops_runtime.agent.unprobed import UnprobedTails
from stellaops_runtime.canonical import demangle as demangling
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator
from stellaops_runtime.hotsymbols.gaps import GapTracker
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.privacy.filter import PrivacyFilter
from stellaops_runtime.privacy.optout import OptOut
from stellaops_runtime.regular_file import open_regular
from stellaops_runtime.store import marks

if TYPE_CHECKING:
    from stellaops_runtime.agent.native_selection import NativeSelection
    from stellaops_runtime.contracts.events import ContainerInfo
    from stellaops_runtime.lifecycle.lookup import ContainerLookup

log = logging.getLogger(__name__)

# Enum members as module globals: on Python 3.11 reading a member through its class costs ~90 ns (the
# enum's class attribute lookup), a global ~7 ns, and _finish compares the kind on every event.
_USDT = EventKind.USDT
_DROP, _FUNCTION = Outcome.DROP, Outcome.FUNCTION


class Pipeline:
    """Everything between a raw payload and an in-memory hot-symbol count."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        node_name: str = "",
        fast_path: bool = True,
        started_ns: int | None = None,
        marked_by: str = "",
    ) -> None:
        """``started_ns``: the agent's start on the wall clock (read now when None), whose UTC day and
        every day before it are judged without the calls an agent before it saw (day_calls.py).
        ``marked_by``: the agent's ``agent_id``, stamped on the marks and restate rows it drains
        (store/marks.py: a restate clears only its own agent's mark)."""
        hs = config.hot_symbols
        self.node_name = node_name
        self.marked_by = marked_by
        self.adapter_stats = AdapterStats()
        self.privacy = PrivacyFilter(config.privacy)
        # Python's USDT function__entry -> the Python function it names (adapter/python_usdt.py).
        self.python_functions = PythonFunctions(
            max_argument_bytes=config.privacy.max_argument_bytes,
            redact=self.privacy.redact_text,
            malformed=self.adapter_stats.malformed,
        )
        self.optout = OptOut()  # pods opted out by stellaops.io/observe-level: None (privacy/optout.py)
        # The operator's list of opted-out pods, in the probe ConfigMap file (agent/optout_watch.py).
        path = config.native.probe_config_file
        self.optout_watch = OptOutWatch(path, self.optout) if path else None
        # Native events kept only for pods a policy selects, once a pod view lists them
        # (agent/native_selection.py, agent/pod_view.py).
        # Imported only then: a node without native probes never selects pods (~0.25 MB of modules).
        self.native_selection: NativeSelection | None = None
        if path and config.native.enabled:
            from stellaops_runtime.agent.native_selection import NativeSelection

            self.native_selection = NativeSelection(path, config.native.probes)
        self.aggregator = HotSymbolAggregator(
            window_seconds=hs.window_seconds,
            min_confidence=hs.min_confidence_threshold,
            max_callers_per_symbol=hs.max_callers_per_symbol,
            max_tracked_caller_keys=hs.max_keys,
            symbol_id_only=config.privacy.symbol_id_only,
            source="tetragon",
            started_ns=time.time_ns() if started_ns is None else started_ns,
        )
        self.gaps = GapTracker(window_seconds=hs.window_seconds, source="tetragon")
        # Split tails the PURL probes left unprobed, set by the source switch (agent/unprobed.py).
        self.unprobed = UnprobedTails()
        self._window_seconds = hs.window_seconds
        self.canonicalizer = make_canonicalizer(config, node_name=node_name)
        self.attribution = (
            HotSymbolAttribution(config.attribution, proc_root=config.symbols.proc_root, node_name=node_name)
            if config.attribution.enabled
            else None
        )
        self.latency = LatencyHistogram()
        self.processed = 0  # events that reached the hot-symbol bridge
        self.attribution_failures = 0  # drains whose attribution step raised (rows kept, no purls)
        self.internal_errors = 0  # events skipped because a stage raised on them
        self.max_stack_depth = validate.DEFAULT_MAX_STACK_DEPTH
        # Container facts from the lifecycle observer (agent/lifecycle_part.py): None until it runs.
        # by_cgroup() names the container of a cgroup id; Tetragon events lacking a digest or pod
        # are filled in from it in _finish (lifecycle/lookup.py: a snapshot swapped whole, no lock).
        self.container_lookup: ContainerLookup | None = None
        self.native_hold = NativeHold()  # native records waiting for the lookup to name their cgroup
        # Repeats of events already processed are counted without processing them again (agent/fastpath.py).
        self.fast_path = self._new_fast_path() if fast_path else None

    def _finish(self, ev: RuntimeCallEvent | None) -> None:
        if ev is None:
            return
        no_pod = ev.pod is None  # then any pod is the runtime's record: what it was created with
        if (lookup := self.container_lookup) is not None and ev.container is not None:
            lookup.enrich(ev)  # what Tetragon gave is kept, but a config digest (lifecycle/lookup.py)
        self.privacy.scrub_image(ev)  # before the image key is read: a name may hold user:pass@
        if self.optout.drops(ev, lookup, pod_from_record=no_pod):  # counted, its image's time unwatched
            ev.node_name = ev.node_name or self.node_name
            self.gaps.opted_out(ev.image_key, ev.node_name, ev.timestamp_ns or time.time_ns())
            return
        if (sel := self.native_selection) is not None and sel.drops(ev):  # a pod no policy asking selects
            if sel.dropped_unwatched:  # a pod no policy selects at all: its image's time unwatched
                self.gaps.not_selected(
                    ev.image_key, ev.node_name or self.node_name, ev.timestamp_ns or time.time_ns()
                )
            return
        if not ev.timestamp_ns:
            ev.timestamp_ns = time.time_ns()
        if not ev.node_name:
            ev.node_name = self.node_name
        if ev.container is not None:
            self.gaps.note(ev)  # before the privacy filter: a throttled filtered pod is no unknown one
        python = False
        if ev.kind is _USDT:  # before the filter: symbolIdOnly clears the args naming the function
            outcome = self.python_functions.apply(ev)
            if outcome is _DROP:
                return
            python = outcome is _FUNCTION
        if self.privacy.apply(ev) is None:  # outside the namespace allowlist: its image's time unwatched
            self.gaps.not_allowed(ev.image_key, ev.node_name, ev.timestamp_ns)
            return
        if self.canonicalizer is not None and not python:  # a .py file has no ELF function to resolve
            self.canonicalizer.canonicalize_in_batch(ev)  # every caller of _finish holds a _batch()
        self.aggregator.observe(ev)
        if self.attribution is not None:
            self.attribution.note(ev)
        self.processed += 1

    def warm_up(self) -> None:
        """Check at start-up that the kernel's symbol table can be read; load it on the first kernel frame.

        The table takes ~2.75 MB for the agent's whole life (docs/benchmarks.md, "Agent
        memory") and only kernel frames need it: Tetragon's kprobes with
        ``kernelStackTrace``, the agent's own probes' kernel stacks. A node whose policies
        ask for none never loads it; elsewhere the first kernel frame loads it, once, on the
        pipeline thread, the receive queue holding what arrives meanwhile: ~0.15 s of CPU with
        the C extension (canonical/_kallsyms.c, most of it without the GIL), ~0.26 s without
        (121,000 symbols, 2026-12-07). An
        unreadable kallsyms is logged here, at start-up, and counted when frames need it.
        """
        if self.canonicalizer is not None:
            path = self.canonicalizer.symbolizer.kallsyms_path
            try:
                fd = open_regular(path)
                try:
                    os.read(fd, 64)  # readable, not only openable
                finally:
                    os.close(fd)
            except OSError as e:
                log.warning("kernel symbols unavailable (%s): kernel frames keep their names", e)

    def shed_caches(self) -> None:
        """Empty the decode caches whose entries were made among a window's keys (pipeline thread)."""
        proto_parts.PARTS.clear()
        demangling.clear_cache()

    def drain(self) -> tuple[list[HotSymbolDelta], list[ObservationWindow]]:
        """Everything aggregated since the last drain (see HotSymbolAggregator.drain), with purls."""
        self.release_native_held()  # held native records whose wait is over count in this drain
        deltas, windows = self.aggregator.drain()
        windows = marks.stamped(self.gaps.drain(windows), self.marked_by)
        now = time.time_ns()
        deltas += self.unprobed.deltas(
            node_name=self.node_name, now_ns=now, window_seconds=self._window_seconds
        )
        if self.attribution is not None:
            try:
                self.attribution.fill(deltas)
            except Exception:  # the counts matter more than their purls: never lose them here
                self.attribution_failures += 1
                log.exception("package attribution failed; %d rows are kept without purls", len(deltas))
        return deltas, windows

    def _batch(self) -> AbstractContextManager[None]:
        """One parse wait shared by the whole batch (module docstring); the opt-out list is current."""
        if (watch := self.optout_watch) is not None and watch.poll() and self.fast_path is not None:
            # Outcomes remembered before the list changed may keep counting a pod now opted out.
            self.fast_path.invalidate()
        if (sel := self.native_selection) is not None and sel.refresh() and self.fast_path is not None:
            self.fast_path.invalidate()  # no outcome computed under other pods' labels or policies is reused
        return self.canonicalizer.batch() if self.canonicalizer is not None else nullcontext()

    def process_proto(self, items: list[tuple[bytes, int]]) -> None:
        """Serialized GetEventsResponse messages with their arrival time."""
        with self._batch():
            self._process_proto(items)
        self._take_drop_signals()
        self._observe_latency(items)

    def _new_fast_path(self) -> FastPath:
        return FastPath(
            finish=self._finish, stats=self.adapter_stats, optout=self.optout, privacy=self.privacy,
            canonicalizer=self.canonicalizer, aggregator=self.aggregator, gaps=self.gaps,
            attribution=self.attribution,
        )  # fmt: skip

    def _process_proto(self, items: list[tuple[bytes, int]]) -> None:
        stats = self.adapter_stats
        depth = self.max_stack_depth
        fast = self.fast_path
        for payload, received in items:
            try:
                if fast is not None:  # a repeat is counted there; anything else runs _finish from there
                    n = fast.proto(payload, received, depth, self.container_lookup)
                    self.processed += n  # after the call: the ordinary path counts in _finish
                    continue
                self._finish(from_proto.adapt_payload(payload, received, stats, depth))
            except Exception as e:  # one bad event must never cost the good ones around it
                self._internal_error(e)

    def note_own_drops(
        self, first_ns: int, last_ns: int, count: int, event_span: tuple[int, int] | None = None
    ) -> None:
        """Events the receive queue dropped: a node-wide gap (hotsymbols/gaps.py), never a silent one;
        ``event_span``: their event times when known (the shutdown deadline's, agent/shutdown.py)."""
        self.gaps.own_drop(self.node_name, first_ns, last_ns, count, event_span=event_span)

    def _take_drop_signals(self) -> None:
        """Hand the batch's drop signals to the gap tracker, with arrival time and node as for events."""
        self.gaps.after_batch()
        signals = self.adapter_stats.drop_signals
        if not signals:
            return
        now = time.time_ns()
        for s in signals:
            if not s.timestamp_ns:
                s.timestamp_ns = now
            if not s.node_name:
                s.node_name = self.node_name
            try:
                self.gaps.signal(s)
            except Exception as e:  # never lose the batch's counts over one signal
                self._internal_error(e)
        signals.clear()

    def process_json(self, items: list[tuple[bytes, int]]) -> None:
        """Tetragon JSON export lines with their arrival time."""
        with self._batch():
            self._process_json(items)
        self._take_drop_signals()
        self._observe_latency(items)

    def process_native(self, items: list[tuple[bytes, int]], native: NativeConfig | None = None) -> None:
        """The agent's own BCC probe records (native/events.py) with their arrival time.

        ``native`` is the configuration the probes were loaded with: its uprobe
        and USDT target lists number the records' targets, so the decoder is
        rebuilt when it changes. Containers come from ``container_lookup`` (the
        lifecycle observer's cgroup map), when there is one.
        """
        from stellaops_runtime.native.events import Decoder  # only on nodes where BCC runs

        dec = getattr(self, "_native_decoder", None)
        if dec is None or dec[0] is not native:
            cfg = native or NativeConfig()

            def containers(cgroup_id: int) -> ContainerInfo | None:
                lookup = getattr(self, "container_lookup", None)
                return lookup.by_cgroup(cgroup_id) if lookup is not None else None

            decoder = Decoder(
                node_name=self.node_name, targets=cfg.uprobes, usdt_targets=cfg.usdt,
                wall_minus_monotonic_ns=time.time_ns() - time.monotonic_ns(), stats=self.adapter_stats,
                containers=containers, max_stack_depth=self.max_stack_depth,
                # one kernel symbol table for the decoder's kernel frames and the canonicalizer's
                kernel_symbols=None if self.canonicalizer is None else self.canonicalizer.symbolizer.kernel,
            )  # fmt: skip
            dec = self._native_decoder = (native, decoder)
        # per batch: the probes' monotonic clock stands still in a suspend and never steps
        dec[1].offset_ns = time.time_ns() - time.monotonic_ns()
        decode = dec[1].decode
        lookup = self.container_lookup
        if lookup is not None:  # the lifecycle observer names containers: wait a moment for new ones
            from stellaops_runtime.native.events import cgroup_of

            def known(cg: int) -> bool:
                return lookup.by_cgroup(cg) is not None

            hold = self.native_hold
            released = hold.release(time.monotonic_ns(), known, lookup=lookup)
            items = released + hold.sort(items, cgroup_of, known)
        with self._batch():
            for payload, received in items:
                try:
                    self._finish(decode(payload, received_ns=received))
                except Exception as e:  # one bad event must never cost the good ones around it
                    self._internal_error(e)
        self._take_drop_signals()
        self._observe_latency(items)

    def release_native_held(self, everything: bool = False) -> None:
        """Decode the held native records whose wait is over (all: ``everything``, at a stop)."""
        if len(self.native_hold) and (dec := getattr(self, "_native_decoder", None)) is not None:
            lookup = self.container_lookup

            def known(cg: int) -> bool:
                return lookup is not None and lookup.by_cgroup(cg) is not None

            items = self.native_hold.release(time.monotonic_ns(), known, everything=everything)
            if items:
                self.process_native(items, dec[0])

    def _process_json(self, items: list[tuple[bytes, int]]) -> None:
        from stellaops_runtime.adapter import from_json  # an export file's lines only: not on gRPC (issue 13)

        stats = self.adapter_stats
        depth = self.max_stack_depth
        fast = self.fast_path
        for line, received in items:
            try:
                if fast is not None:
                    n = fast.json(line, received, depth, self.container_lookup)
                    self.processed += n
                    continue
                obj = from_json.decode_line(line)
                self._finish(from_json.adapt(obj, received_ns=received, stats=stats, max_stack_depth=depth))
            except from_json.MalformedEvent as e:
                stats.malformed[e.reason] += 1
            except Exception as e:  # one bad event must never cost the good ones around it
                self._internal_error(e)

    def _internal_error(self, e: Exception) -> None:
        """An event no stage could handle: counted by exception type, logged (first few in full)."""
        name = type(e).__name__
        self.adapter_stats.malformed[f"internal_{name}"] += 1
        self.internal_errors += 1
        if self.internal_errors <= 10:
            # The message can quote the event's text (a path, an argument): through the privacy
            # filter's rules, whole (a cut first could leave a secret its rule no longer knows),
            # then cut; the traceback's frames without it.
            where = "".join(traceback.format_tb(e.__traceback__))
            try:
                text = self.privacy.redact_text(str(e)[: 1 << 20])[:2000]
            except Exception:  # a rule failing on the event fails on a message quoting it too
                text = "(not shown: the privacy rules failed on it)"
            log.error("event skipped after an internal error (%s: %s)\n%s", name, text, where)

    def _observe_latency(self, items: list[tuple[bytes, int]]) -> None:
        """The batch's events in the latency histogram (agent/latency.py), one clock read for all."""
        self.latency.observe_batch(items, time.monotonic_ns())
