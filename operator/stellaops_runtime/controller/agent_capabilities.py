"""Which Linux capabilities the agent container adds, and whether they let it load its own probes.

All other capabilities are dropped. With Tetragon as the event source only
``SYS_PTRACE`` (reading another process's ``/proc/<pid>/root`` and ``maps``);
a native source (the agent's own eBPF probes) adds ``BPF`` and ``PERFMON``.
``spec.agent.capabilities``, when set, replaces the default. The native
fallback is on exactly when the capabilities allow it. Why each one, and
what the pod is granted besides, is in the docstring of
``controller/render_agent.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

AgentSource = Literal["tetragon", "native"]
# Reading /proc/<pid>/root and /proc/<pid>/maps of other processes (a ptrace access check).
BASE_CAPABILITIES = ("SYS_PTRACE",)
# Only for the native source: loading and attaching eBPF programs. Tetragon as the source
# loads every probe itself. SYS_RESOURCE (memlock, kernels before 5.11) only when asked for.
NATIVE_CAPABILITIES = ("BPF", "PERFMON")


def default_capabilities(source: AgentSource) -> list[str]:
    """The capabilities an agent of ``source`` adds when the RuntimeObserver names none, sorted."""
    caps = set(BASE_CAPABILITIES)
    if source == "native":
        caps.update(NATIVE_CAPABILITIES)
    return sorted(caps)


def agent_capabilities(source: AgentSource, requested: Sequence[str] | None = None) -> list[str]:
    """The capabilities the agent container adds (all others dropped), sorted.

    ``requested`` is ``spec.agent.capabilities``: when set (even empty) exactly
    those, else the source's default.
    """
    return default_capabilities(source) if requested is None else sorted(set(requested))


def native_fallback(capabilities: Sequence[str]) -> bool:
    """Whether these capabilities let the agent load its own BCC probes (its config then enables them)."""
    caps = set(capabilities)
    return "SYS_ADMIN" in caps or {"BPF", "PERFMON"} <= caps
