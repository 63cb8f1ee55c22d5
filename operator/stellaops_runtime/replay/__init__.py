"""A stand-in Tetragon: a real FineGuidanceSensors gRPC server replaying recorded events.

Tests and demos point the agent at it exactly as at a node's Tetragon
(``localhost:54321`` or ``unix:///var/run/tetragon/tetragon.sock``), so the
agent's gRPC source, reconnects and server-side filters are exercised over a
real socket. ``events`` loads a JSON export once into wire bytes, ``filters``
implements Tetragon's allow/deny semantics, ``server`` streams.
"""

from stellaops_runtime.replay.events import LoadResult, ReplayEvent, load_events
from stellaops_runtime.replay.server import PolicyStatus, ReplayServer

__all__ = ["LoadResult", "PolicyStatus", "ReplayEvent", "ReplayServer", "load_events"]
