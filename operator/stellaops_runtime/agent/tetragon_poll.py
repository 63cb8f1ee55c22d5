"""One poll of Tetragon for the agent's ObservationNode: reachability, policies, and its socket.

Why this module exists: agent/node_status.py writes the ObservationNode's status; what it reports of
Tetragon comes from one poll here, kept apart because it is a protocol of its own with ordering
rules the status writer need not know:

- the monotonic moment ``asked`` is taken before Tetragon is asked, so a policy it lists as loaded
  anew later was loaded after that moment (agent/policy_reloads.py);
- Tetragon's unix socket is looked at (``server_identity``: its device and inode, a new one being a
  Tetragon started since) after ``asked`` and before the list, so the old Tetragon's answer is never
  paired with the new socket (a false restart). The look runs on a daemon thread, waited for
  Tetragon's timeout at most: a hung file system under the socket stalls neither the poll nor the
  event loop, and while a look hangs no other starts;
- ListTracingPolicies is asked with each load's number, told to the policy watch
  (agent/policy_load_gaps.py) whether or not the API server answers, and taken out of what the
  status shows (``without_ids``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from stellaops_runtime import rpc
from stellaops_runtime.agent.capabilities import (
    TetragonInfo,
    UndecodableAnswer,
    list_tracing_policies,
    probe_tetragon,
)
from stellaops_runtime.agent.policy_load_gaps import PolicyLoadWatch
from stellaops_runtime.agent.policy_reloads import server_identity
from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.sources.tetragon_grpc import one_line


def tetragon_connected(stream: object) -> bool | None:
    """Whether the agent's Tetragon stream is connected (None: the writer was not given the source)."""
    if stream is None:
        return None
    return bool(getattr(stream, "tetragon_connected", getattr(stream, "connected", False)))


class TetragonPoll:
    """Polls one Tetragon (see the module docstring); keeps the socket look that may still hang."""

    def __init__(self, tetragon: TetragonConfig) -> None:
        self.tetragon = tetragon
        self._look: asyncio.Future[tuple[int, int] | None] | None = None  # the socket's (server_identity)

    async def read(
        self, *, stream: object, policy_watch: PolicyLoadWatch | None
    ) -> tuple[TetragonInfo, list[dict[str, Any]] | None]:
        """Tetragon's reachability and ListTracingPolicies (None: not answered, and each load's number
        kept), told to ``policy_watch`` (with ``stream``'s connection state)."""
        timeout = self.tetragon.timeout_seconds
        asked = time.monotonic_ns()  # before Tetragon's answer: a policy it lists reloaded later loaded after
        server = await self.server_identity()  # after ``asked``: a new one, a Tetragon since
        tetragon = await probe_tetragon(self.tetragon.address, timeout_s=timeout)
        policies: list[dict[str, Any]] | None = None
        if tetragon.reachable:
            try:
                address = self.tetragon.address
                policies = await list_tracing_policies(address, timeout_s=timeout, with_ids=True)
            except rpc.RpcError as e:
                tetragon = TetragonInfo(
                    address=tetragon.address,
                    version=tetragon.version,
                    error=f"ListTracingPolicies: {e.code().name}: {one_line(e.details())}",
                )
            except UndecodableAnswer as e:  # garbled: Tetragon unusable, the status still written
                tetragon = TetragonInfo(address=tetragon.address, version=tetragon.version, error=str(e))
        if policy_watch is not None:
            connects = getattr(stream, "connects", None)
            policy_watch.observe(
                policies,
                now_ns=time.time_ns(),
                connected=tetragon_connected(stream),
                connects=connects if isinstance(connects, int) else None,
                asked_mono_ns=asked,
                server=server,
            )
        return tetragon, policies

    async def server_identity(self) -> tuple[int, int] | None:
        """``server_identity`` of Tetragon's socket on a daemon thread, waited for Tetragon's timeout
        at most (None: not told, no restart seen): a hung file system under the socket stalls neither
        the poll nor the event loop, and while a look hangs no other starts (one thread at most; a
        daemon's, so the agent's exit does not wait for it)."""
        address = self.tetragon.address
        if not address.startswith("unix:"):
            return None
        if self._look is not None and not self._look.done():
            return None  # the last look still hangs
        loop = asyncio.get_running_loop()
        look: asyncio.Future[tuple[int, int] | None] = loop.create_future()
        self._look = look

        def run() -> None:
            try:
                found = server_identity(address)
            except Exception:  # any failure: not told
                found = None

            def settle() -> None:
                if not look.done():
                    look.set_result(found)

            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle)

        threading.Thread(target=run, name="tetragon-socket-look", daemon=True).start()
        try:
            return await asyncio.wait_for(asyncio.shield(look), self.tetragon.timeout_seconds)
        except TimeoutError:
            return None
