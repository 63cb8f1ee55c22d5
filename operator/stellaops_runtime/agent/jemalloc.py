"""The agent under jemalloc, so that the memory a window of keys used goes back to the node.

Why this module exists (issue 13, measured in docs/benchmarks.md, "Eleventh pass"): a
window of 100,000 new keys allocates ~60 MB of small Python objects and frees them at the
flush. CPython's own allocator (pymalloc) returns a 1 MiB arena to the kernel only when
its last object is freed, and every window leaves a few long-lived objects (module paths of
new processes, statement caches, metric children) among its keys: the agent on PostgreSQL
held ~135 MB after such a flush, ~55 MB of it free arenas. jemalloc works in pages, gives a
freed page back at once (``dirty_decay_ms:0``) and runs the agent's pipeline within 1-3 % of
pymalloc's speed (bench/pipeline_ab.py ``--after-env``); with it, and one-page slabs, the same
agent held ~97 MB.

The allocator is chosen when a process starts (``LD_PRELOAD``, ``PYTHONMALLOC``), so
``stella-runtime agent`` re-executes itself once, with the same interpreter and arguments,
when Debian's ``libjemalloc2`` is installed (the image has it) and nothing else was asked
for. ``STELLA_AGENT_ALLOCATOR=system`` keeps the interpreter's own allocator; an operator
who set ``PYTHONMALLOC`` or preloads another allocator keeps that; ``MALLOC_CONF`` set by
the operator is kept as it is. The library is preloaded only from the system's library
directories and only when root owns it and nobody else can write it: the agent runs as
root, and a preloaded library runs with its privileges.
"""

from __future__ import annotations

import ctypes
import logging
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

SONAME = "libjemalloc.so.2"
CHOICE_ENV = "STELLA_AGENT_ALLOCATOR"  # auto (default), jemalloc, system
MARK_ENV = "STELLA_AGENT_ALLOCATOR_EXEC"  # set across the one re-exec: never twice
# One arena for the few threads the agent has; a freed page goes back to the kernel at once;
# small objects in one-page slabs (jemalloc's default is up to 7 pages), so that an object that
# outlives its window keeps one page of it, not 28 KiB.
MALLOC_CONF = "narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0,slab_sizes:1-4096:1"
CHOICES = ("auto", "jemalloc", "system")


def candidates(multiarch: str | None) -> list[str]:
    """Where Debian (and other distributions) install the library, most specific first."""
    dirs = [f"/usr/lib/{multiarch}"] if multiarch else []
    dirs += ["/usr/lib64", "/usr/lib"]
    return [f"{d}/{SONAME}" for d in dirs]


def trusted(path: str) -> bool:
    """A regular file (after links) owned by root that neither group nor others may write."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def find_library(multiarch: str | None = None) -> str | None:
    """The first trusted jemalloc library of :func:`candidates`, or None."""
    if multiarch is None:  # CPython's own triplet (sysconfig would load every build variable)
        multiarch = getattr(sys.implementation, "_multiarch", None) or None
    for path in candidates(multiarch):
        if trusted(path):
            return path
    return None


@dataclass(frozen=True)
class Plan:
    """What to do at start-up: ``env`` is the environment to re-execute with (None: carry on)."""

    env: dict[str, str] | None
    reason: str


def plan(environ: Mapping[str, str], library: str | None) -> Plan:
    """Decide, from the environment and the library found, whether to re-execute (pure)."""
    choice = environ.get(CHOICE_ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        listed = ", ".join(CHOICES)
        return Plan(None, f"{CHOICE_ENV}={choice!r} is not one of {listed}")
    if environ.get(MARK_ENV):
        return Plan(None, "already re-executed")
    if choice == "system":
        return Plan(None, f"{CHOICE_ENV}=system")
    preload = environ.get("LD_PRELOAD", "")
    if environ.get("PYTHONMALLOC") or preload:
        return Plan(None, "PYTHONMALLOC or LD_PRELOAD set by the operator, kept as they are")
    if library is None:
        return Plan(None, f"{SONAME} not found: Debian package libjemalloc2")
    env = dict(environ)
    env.update({"LD_PRELOAD": library, "PYTHONMALLOC": "malloc", MARK_ENV: library})
    env.setdefault("MALLOC_CONF", MALLOC_CONF)
    return Plan(env, f"jemalloc ({library})")


def reexec_command(orig_argv: Sequence[str], executable: str) -> list[str]:
    """The command that started this interpreter, to run again (``sys.orig_argv``)."""
    argv = list(orig_argv) or [executable]
    argv[0] = executable
    return argv


def reexec_if_planned(environ: Mapping[str, str] | None = None) -> str:
    """Re-execute this process under jemalloc when :func:`plan` says so (does not return then).

    Call it before any thread exists. Returns why the process carries on as it is; an exec
    that fails is logged and the agent carries on with the interpreter's allocator.
    """
    environ = os.environ if environ is None else environ
    decision = plan(environ, find_library())
    if decision.env is None:
        return decision.reason
    argv = reexec_command(getattr(sys, "orig_argv", []), sys.executable)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, decision.env)
    except OSError as e:
        return f"re-executing under jemalloc failed: {e}"
    raise AssertionError("unreachable")  # pragma: no cover


def active() -> str | None:
    """The jemalloc library this process runs with (mapped and answering ``mallctl``), else None."""
    try:
        with open("/proc/self/maps") as f:
            mapped = next((line.split()[-1] for line in f if SONAME in line), None)
    except OSError:
        return None
    if mapped is None:
        return None
    try:
        return mapped if hasattr(ctypes.CDLL(None), "mallctl") else None
    except OSError:
        return None


def purge() -> bool:
    """Give every arena's free pages back (``arena.<MALLCTL_ARENAS_ALL>.purge``); False if not jemalloc."""
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):
        return False
    mallctl.restype = ctypes.c_int
    return mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0)) == 0
