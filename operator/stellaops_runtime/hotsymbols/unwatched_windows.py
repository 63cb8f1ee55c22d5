"""The windows in which a pod of an image ran unwatched: each is that image's gap.

Split from hotsymbols/gaps.py (which owns every gap and merges them into the
drained rows) so that file stays small; this part only keeps *which* (image,
node, window) a pod ran in unwatched, and why (the gap row's ``source``):

- an **opted-out pod** (``stellaops.io/observe-level``, privacy/optout.py,
  source ``opted_out``): its events are dropped unseen, but the time it ran is
  not watched for its image, so no "not observed" about the image may rest on
  a time one of its pods ran unwatched;
- a pod in a **namespace the privacy allowlist leaves out**
  (``privacy.allowedNamespaces``, privacy/filter.py, source ``not_allowed``).
  Host processes (namespace ``""``, image ``host:<node>``) are not marked: all
  or none of them pass the allowlist, so the host image is never partly watched;
- a pod **no native policy selects** at all, or an event of no pod
  (agent/native_selection.py ``dropped_unwatched``, source ``not_selected``):
  the agent's own probes fired in it and its event was dropped as Tetragon
  would never have seen it. Host processes are not marked: no podSelector
  matches any of them, so the host image is never partly watched.

Each marks the image's whole aggregation window (when in it the pod ran is
not kept, and the wider gap is the safe side). Only the image, node and window
are kept: no pod, no call, no time within the window. An image without a
digest (``container:<id>``, a name) marks the node's window node-wide: no
question could name it, its name is not to be kept, and it could be any image
there. Past ``limit`` keys between two drains, any pod marks node-wide too: a
wider gap, never a lost one. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE

OPTED_OUT_SOURCE = "opted_out"  # the source of an opted-out pod's gap (opted_out)
NOT_ALLOWED_SOURCE = "not_allowed"  # the source of a gap of a pod outside privacy.allowedNamespaces
NOT_SELECTED_SOURCE = "not_selected"  # the source of a gap of a pod no native policy selects
MAX_OPTED_WINDOWS = 100_000  # (image, node, window) keys held between drains, then node-wide
_DIGEST_PREFIXES = ("sha256:", "sha512:")  # image keys a question can name (store/refs.py)

Key = tuple[str, str, int, str]  # (image, node, window start, source)
# Marks [start_ns, end_ns] of (image, node) as a gap of that source (GapTracker._mark).
MarkFn = Callable[[str, str, int, int, str], None]


class UnwatchedWindows:
    """The (image, node, window, source) keys of pods that ran unwatched since the last drain."""

    __slots__ = ("_counts", "_keys", "_limit", "_mark", "_window_ns")

    def __init__(self, window_ns: int, *, limit: int, mark: MarkFn, counts: dict[str, Counter[str]]) -> None:
        self._window_ns = window_ns
        self._limit = limit  # GapTracker passes gaps.MAX_OPTED_WINDOWS (a test lowers it there)
        self._mark = mark
        self._counts = counts  # source -> node -> events marked (GapStats' counters)
        self._keys: set[Key] = set()

    def opted_out(self, image: str, node: str, ts_ns: int) -> None:
        """An event of an opted-out pod of ``image`` on ``node`` at ``ts_ns`` was dropped unseen.

        The image's window of that time gets a gap (source ``opted_out``) over the whole window:
        the pod ran there unwatched, and a call of the function asked about may be among what was
        dropped. Cheap (one set look-up): it runs for every dropped event.
        """
        if ts_ns > 0:
            self._add(image, node, ts_ns, OPTED_OUT_SOURCE)

    def not_allowed(self, image: str, node: str, ts_ns: int) -> None:
        """An event of a pod of ``image`` outside ``privacy.allowedNamespaces`` was dropped unseen.

        As :meth:`opted_out` (source ``not_allowed``). A host process (``host:<node>``) marks
        nothing: every host event has namespace ``""``, so the allowlist drops all of them or none.
        """
        if ts_ns > 0 and not image.startswith("host:"):
            self._add(image, node, ts_ns, NOT_ALLOWED_SOURCE)

    def not_selected(self, image: str, node: str, ts_ns: int) -> None:
        """An event of the agent's own probes in a pod of ``image`` no native policy selects was dropped.

        As :meth:`not_allowed` (source ``not_selected``): the probe fired in a pod no policy watches,
        so no "not observed" about the image may rest on that window beside another pod of it that
        is watched. A host process (``host:<node>``) marks nothing: no podSelector matches any, so
        the host image is never partly watched.
        """
        if ts_ns > 0 and not image.startswith("host:"):
            self._add(image, node, ts_ns, NOT_SELECTED_SOURCE)

    def _add(self, image: str, node: str, ts_ns: int, source: str) -> None:
        self._counts[source][node] += 1
        if not image.startswith(_DIGEST_PREFIXES):
            image = NODE_WIDE  # no digest: no question could name it, and it could be any image here
        w = ts_ns - ts_ns % self._window_ns
        key = (image, node, w, source)
        if key in self._keys:
            return
        if len(self._keys) < self._limit:
            self._keys.add(key)
        else:
            self._mark(NODE_WIDE, node, w, w + self._window_ns, source)

    def take(self) -> None:
        """Turn the keys held into whole-window gap marks (at drain)."""
        keys, self._keys = self._keys, set()
        for image, node, w, source in keys:
            self._mark(image, node, w, w + self._window_ns, source)
