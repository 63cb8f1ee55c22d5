"""What a hot-symbol key remembers about the frames and the example observation it was first seen with.

Split from :mod:`stellaops_runtime.hotsymbols.aggregate` so that module keeps to
counting. Everything here runs once per *new* key (or once per event that
creates keys), never per repeat, so it may spend a hash or two to keep memory
down: the aggregator holds up to ``hotSymbols.maxKeys`` keys (issue 13).

- :class:`StringTable` makes equal strings one object. Every event decodes
  its own copy of the image digest, the module path, the node name, the
  binary; a key would otherwise pin the copy of the event that created it.
  The table is bounded and starts over when full (a string it forgot stays
  alive as long as a key uses it, it is just not shared with later keys).
  ``sys.intern`` is not used: its strings are immortal on some Python
  versions, and process arguments are unbounded in variety.
- :class:`SampleTable` does the same for the example observation (a tuple):
  the events of one process mostly carry the same binary, arguments, pod and
  stack, so their samples are one tuple.
- :func:`sample_dict` turns that tuple into the JSON object the store keeps.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.canonical.function_id import function_entry_id
from stellaops_runtime.canonical.resolution import RESOLVED_SOURCES
from stellaops_runtime.contracts.events import RuntimeCallEvent, StackFrame

# Entries before a table starts over: enough for every image, module, node and
# binary of a busy node, small next to the keys themselves (~100 B an entry).
MAX_SHARED_STRINGS = 65_536
MAX_SHARED_SAMPLES = 16_384


def frame_function(f: StackFrame) -> str:
    """The function name a frame is counted under.

    The symbol when one is known; otherwise the file offset (``0x1a2b``), so
    that an unsymbolized frame is still one stable key per location.
    """
    return f.symbol or f"0x{f.offset:x}"


def frame_entry_id(f: StackFrame) -> str:
    """The canonical ID of the function a frame is in (its entry), or "" when not resolved."""
    if f.source in RESOLVED_SOURCES and f.build_id and f.symbol:
        return function_entry_id(f.build_id, f.symbol)
    return ""


def frame_text(f: StackFrame) -> str:
    """A frame for a sample: ``module!symbol+0x<offset from the symbol>`` once resolved, else
    ``module!<hint or 0xfile offset>+0x<file offset>`` as the source gave it."""
    off = f.symbol_offset if f.source in RESOLVED_SOURCES else f.offset
    if f.module:
        return f"{f.module}!{frame_function(f)}+0x{off:x}"
    return f"{frame_function(f)}+0x{off:x}"


def stack_text(frames: list[StackFrame]) -> tuple[str, ...]:
    """A stack for a sample: :func:`frame_text` per frame, each preceded by the functions inlined
    at it, innermost first, as ``module!name (inlined)`` (they have no offset of their own)."""
    out: list[str] = []
    for f in frames:
        if f.inlined:
            at = f"{f.module}!" if f.module else ""
            out.extend(f"{at}{name} (inlined)" for name in f.inlined)
        out.append(frame_text(f))
    return tuple(out)


class StringTable:
    """Equal strings as one object (bounded; see the module docstring)."""

    __slots__ = ("_max", "_strings")

    def __init__(self, max_entries: int = MAX_SHARED_STRINGS) -> None:
        self._strings: dict[str, str] = {}
        self._max = max_entries

    def __call__(self, s: str) -> str:
        shared = self._strings.get(s)
        if shared is not None:
            return shared
        if len(self._strings) >= self._max:
            self._strings.clear()
        self._strings[s] = s
        return s

    def __len__(self) -> int:
        return len(self._strings)


class SampleTable:
    """The example observation of new keys, built once per event and shared by equal events."""

    __slots__ = ("_event", "_max", "_samples", "_share", "_symbol_id_only", "_value")

    def __init__(self, share: StringTable, *, symbol_id_only: bool, max_entries: int = MAX_SHARED_SAMPLES):
        self._share = share
        self._samples: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._max = max_entries
        self._symbol_id_only = symbol_id_only
        self._event: RuntimeCallEvent | None = None
        self._value: tuple[Any, ...] = ()

    def of(self, ev: RuntimeCallEvent) -> tuple[Any, ...]:
        """The sample of ``ev`` (arguments already privacy-filtered), as a compact tuple."""
        if ev is self._event:
            return self._value
        share = self._share
        stack = stack_text(ev.user_stack)
        binary = share(ev.process.binary)
        if self._symbol_id_only:
            value: tuple[Any, ...] = (binary, stack)
        else:
            pod = ev.pod
            value = (
                binary,
                stack,
                ev.process.arguments,
                tuple(f"{a.label}={a.value}" if a.label else a.value for a in ev.arguments),
                share(pod.namespace) if pod else "",
                share(pod.name) if pod else "",
                share(ev.container.id) if ev.container else "",
                tuple(frame_text(f) for f in ev.kernel_stack),
            )
        shared = self._samples.get(value)
        if shared is None:
            if len(self._samples) >= self._max:
                self._samples.clear()
            shared = self._samples[value] = value
        self._event, self._value = ev, shared
        return shared


def sample_dict(value: tuple[Any, ...] | None) -> dict[str, Any]:
    """The sample tuple as the JSON object the store keeps (a fresh dict: callers may change it)."""
    if not value:
        return {}
    out = {"binary": value[0], "stack": list(value[1])}
    if len(value) > 2:
        out |= {
            "arguments": value[2],
            "event_arguments": list(value[3]),
            "namespace": value[4],
            "pod": value[5],
            "container_id": value[6],
            "kernel_stack": list(value[7]),
        }
    return out
