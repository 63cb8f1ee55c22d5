"""A server's status text reaches the agent's log and the ObservationNode by every path as one line.

Whoever answers at ``tetragon.address`` (on a TCP address any local process can)
writes the gRPC status details and GetHealth's details. The event stream's path
escapes, redacts and clips them (sources/tetragon_grpc.py ``one_line``,
tests/integration/test_tetragon_stream_flapping.py); the capability probe
(GetVersion, GetHealth: agent/capabilities.py ``probe_tetragon``, asked by the
ObservationNode writer and the source switch) and the ObservationNode writer's
ListTracingPolicies logged them raw: line breaks forged log lines, escape
sequences reached the terminal, a password stayed, and a health text of any size
went into the log and the node's status. Over real gRPC, each path's text is now
one redacted line of bounded length.
"""

from __future__ import annotations

import grpc
import pytest

from stellaops_runtime.agent.capabilities import probe_tetragon
from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.wire.tetragon import sensors_pb2, tetragon_pb2

SECRET = "hunter2secret"
HOSTILE = f"down\nlevel=error msg=FORGED\r\x1b[2J postgresql://app:{SECRET}@db/x " + "x" * 5_000


class HostileTetragon:
    """GetVersion, GetHealth and ListTracingPolicies; ``fail`` names the one that answers hostile."""

    def __init__(self, fail: str) -> None:
        self.fail = fail
        self.server = grpc.aio.server()
        unary = grpc.unary_unary_rpc_method_handler
        handler = grpc.method_handlers_generic_handler(
            "tetragon.FineGuidanceSensors",
            {
                "GetVersion": unary(self._version, response_serializer=lambda m: m.SerializeToString()),
                "GetHealth": unary(self._health, response_serializer=lambda m: m.SerializeToString()),
                "ListTracingPolicies": unary(self._list, response_serializer=lambda m: m.SerializeToString()),
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def _version(
        self, _req: bytes, context: grpc.aio.ServicerContext
    ) -> sensors_pb2.GetVersionResponse:
        if self.fail == "version":
            await context.abort(grpc.StatusCode.UNAVAILABLE, HOSTILE)
        return sensors_pb2.GetVersionResponse(version="v1.4.0")

    async def _health(
        self, _req: bytes, _ctx: grpc.aio.ServicerContext
    ) -> tetragon_pb2.GetHealthStatusResponse:
        status = (
            tetragon_pb2.HEALTH_STATUS_ERROR if self.fail == "health" else tetragon_pb2.HEALTH_STATUS_RUNNING
        )
        details = HOSTILE * 20 if self.fail == "health" else "running"  # 100 KB: no metadata limit here
        return tetragon_pb2.GetHealthStatusResponse(
            health_status=[tetragon_pb2.HealthStatus(status=status, details=details)]
        )

    async def _list(
        self, _req: bytes, context: grpc.aio.ServicerContext
    ) -> sensors_pb2.ListTracingPoliciesResponse:
        if self.fail == "list":
            await context.abort(grpc.StatusCode.INTERNAL, HOSTILE)
        return sensors_pb2.ListTracingPoliciesResponse()


def _one_line(text: str) -> None:
    assert text, "no error said"
    assert not any(c in text for c in "\n\r\x1b"), repr(text[:200])
    assert SECRET not in text and "hunter" not in text, text[:300]
    assert len(text) < 1_200, len(text)


@pytest.mark.asyncio
@pytest.mark.parametrize("fail", ["version", "health"])
async def test_the_capability_probe_says_a_hostile_status_as_one_redacted_line(fail: str) -> None:
    tetragon = HostileTetragon(fail)
    await tetragon.server.start()
    try:
        info = await probe_tetragon(f"127.0.0.1:{tetragon.port}", timeout_s=5)
    finally:
        await tetragon.server.stop(0)
    assert not info.reachable
    _one_line(info.error)


@pytest.mark.asyncio
async def test_the_observation_node_writer_says_a_hostile_list_status_as_one_redacted_line() -> None:
    tetragon = HostileTetragon("list")
    await tetragon.server.start()
    try:
        writer = ObservationNodeWriter(
            node_name="n1",
            config=ObservationNodeConfig(),
            tetragon=TetragonConfig(address=f"127.0.0.1:{tetragon.port}", connectionTimeout=5),
            try_bpf=False,
        )
        info, policies = await writer._read_tetragon()
    finally:
        await tetragon.server.stop(0)
    assert policies is None and info.error.startswith("ListTracingPolicies: INTERNAL: ")
    _one_line(info.error)
