"""glibc malloc settings for the agent, so that hostile event sizes do not stay in its memory.

Why this module exists (issue 10, measured in docs/benchmarks.md): a burst of
events with 4 MiB arguments passes through buffers of several MiB (gRPC's
receive slices, the raw payload, the decoded message, the argument's text).
With glibc's defaults two things keep that memory resident long after the
buffers are freed:

- the *dynamic mmap threshold*: the first free of a large mmap'd block raises
  ``M_MMAP_THRESHOLD`` to that block's size (up to 32 MiB), so every later
  4 MiB buffer comes from a heap, where a freed block below a live one cannot
  go back to the kernel. Fixing the threshold at glibc's own initial value
  (128 KiB) turns the dynamic adjustment off: large buffers are mapped and
  unmapped, and a freed one leaves the process at once;
- *one arena per thread*: gRPC's threads, the pipeline thread and the event
  loop each get an arena (up to 8 per core) that keeps its own free memory.
  ``M_ARENA_MAX`` 2 shares two arenas between them.

Both are set with ``mallopt`` before the agent starts any thread. An operator
who sets ``MALLOC_ARENA_MAX`` or ``MALLOC_MMAP_THRESHOLD_`` in the environment
keeps that value. Elsewhere than on glibc (musl, macOS) nothing is changed.

A third thing (issue 13): a flush of many rows allocates a few KiB per row for
a moment (the drained deltas, the outage buffer, the store's statements), in
blocks below the mmap threshold. Freed, they stay in glibc's heaps, and the
agent's RSS stays at its peak. :func:`release_free_memory` (``malloc_trim``)
gives those free pages back; the agent calls it after flushes that wrote many
rows (measured: after 100,000 rows, RSS from ~540 MB back to ~195 MB, in
about 0.1 s; docs/benchmarks.md, "Agent memory").

Where the agent runs under jemalloc (agent/jemalloc.py, the default where it is
installed), glibc's allocator holds nothing: the settings are not applied and
the release asks jemalloc to purge instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

from stellaops_runtime.agent import jemalloc

log = logging.getLogger(__name__)

# From glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 128 << 10  # glibc's initial value, no longer raised dynamically
ARENA_MAX = 2

# (mallopt parameter, value, the environment variable that overrides it)
_SETTINGS = (
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES, "MALLOC_MMAP_THRESHOLD_"),
    (M_ARENA_MAX, ARENA_MAX, "MALLOC_ARENA_MAX"),
)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or not _glibc_version().startswith("glibc "):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def _glibc_version() -> str:
    """glibc's name and version (``glibc 2.36``) as the C library reports it, else "".

    What ``platform.libc_ver()`` reads first; without the ``platform`` module, which the agent
    has no other use for (issue 13).
    """
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # a C library that is not glibc (musl) does not know the name
        return ""


_libc: list[ctypes.CDLL | None] = []  # looked up once
_jemalloc: list[str | None] = []  # the jemalloc library this process runs with, looked up once


def jemalloc_library() -> str | None:
    """The jemalloc library this process's malloc is (agent/jemalloc.py), else None."""
    if not _jemalloc:
        _jemalloc.append(jemalloc.active())
    return _jemalloc[0]


def under_jemalloc() -> bool:
    """True when this process's malloc is jemalloc."""
    return jemalloc_library() is not None


def release_free_memory() -> bool:
    """Return the heaps' free pages to the kernel (glibc ``malloc_trim(0)``); True when some were.

    Takes the allocator's locks for its duration (about 0.1 s for a heap of
    500 MB), so callers run it on a worker thread. False off glibc. Under jemalloc: its
    purge of every arena.
    """
    if under_jemalloc():
        return jemalloc.purge()
    if not _libc:
        _libc.append(_glibc())
    libc = _libc[0]
    if libc is None:
        return False
    return bool(libc.malloc_trim(ctypes.c_size_t(0)))


def tune_malloc() -> dict[str, int]:
    """Apply the settings above; returns the ones applied (name -> value), empty off glibc's malloc."""
    libc = None if under_jemalloc() else _glibc()
    if libc is None:
        return {}
    applied: dict[str, int] = {}
    for param, value, env in _SETTINGS:
        if os.environ.get(env):
            continue  # the operator's own setting wins; glibc read it at start-up
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
            applied[env.rstrip("_")] = value
        else:
            log.debug("mallopt(%d, %d) refused", param, value)
    return applied
