"""Tetragon answering with bytes that are no message: the node says Tetragon is unusable, and why.

grpc's aio client hands back ``None`` when a unary answer cannot be decoded
(bytes that are not the message, a string field of invalid UTF-8). The
agent read ``.policies`` (or ``.version``) of it: an AttributeError left its
ObservationNode poll as an internal error, so no status was written at all,
no heartbeat either, and the node's report went stale with the log saying
only ``'NoneType' object has no attribute 'policies'``. Now the answer counts
as Tetragon's error (``errors['tetragon']``): the status is written with
Tetragon unreachable, ``Ready`` False with a message naming the call, no
policy listed (so no policy counts the node as running it).
Here a real gRPC server plays Tetragon; the agent's writer reports to kmock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
import pytest_asyncio

from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.kube import resources as r
from stellaops_runtime.wire.tetragon import sensors_pb2, tetragon_pb2
from tests.integration.kubeharness import Cluster, obj
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

GARBAGE = b"\xff\xff\xff\xff"
GOOD_VERSION = sensors_pb2.GetVersionResponse(version="v1.7.0").SerializeToString()
GOOD_HEALTH = tetragon_pb2.GetHealthStatusResponse(
    health_status=[tetragon_pb2.HealthStatus(status=tetragon_pb2.HEALTH_STATUS_RUNNING)]
).SerializeToString()
# a name of invalid UTF-8: protobuf refuses to decode the string field
BAD_UTF8 = (
    sensors_pb2.ListTracingPoliciesResponse(
        policies=[sensors_pb2.TracingPolicyStatus(name="q", state=sensors_pb2.TP_STATE_ENABLED)]
    )
    .SerializeToString()
    .replace(b"q", b"\xff")
)


class Tetragon:
    """Answers GetVersion, GetHealth and ListTracingPolicies with the bytes it is told."""

    def __init__(self) -> None:
        self.answers = {"GetVersion": GOOD_VERSION, "GetHealth": GOOD_HEALTH, "ListTracingPolicies": b""}
        self.server = grpc.aio.server()
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                self._handler(method), request_deserializer=bytes, response_serializer=bytes
            )
            for method in self.answers
        }
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("tetragon.FineGuidanceSensors", handlers)]
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    def _handler(self, method: str) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return self.answers[method]

        return answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Node", "node-a"))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tetragon() -> AsyncIterator[Tetragon]:
    t = Tetragon()
    await t.server.start()
    yield t
    await t.server.stop(0)


async def report(cluster: Cluster, tetragon: Tetragon) -> tuple[ObservationNodeWriter, dict]:
    w = ObservationNodeWriter(
        node_name="node-a",
        config=ObservationNodeConfig(enabled=True, heartbeatSeconds=3600, kubeconfig=str(cluster.kubeconfig)),
        tetragon=TetragonConfig(address=tetragon.address, timeoutSeconds=30),
        try_bpf=False,
    )
    stop = asyncio.Event()
    stop.set()
    try:
        assert await w.tick(), w.stats.last_error  # the status is written, whatever Tetragon answered
    finally:
        await w.run(stop)  # closes its client
    return w, (cluster.stored(r.OBSERVATION_NODES, "node-a") or {})["status"]


@pytest.mark.parametrize(
    ("method", "answer"),
    [("ListTracingPolicies", GARBAGE), ("ListTracingPolicies", BAD_UTF8), ("GetVersion", GARBAGE)],
)
async def test_an_undecodable_answer_is_tetragon_unusable_not_a_silent_node(
    cluster: Cluster, tetragon: Tetragon, method: str, answer: bytes
) -> None:
    tetragon.answers = {"GetVersion": GOOD_VERSION, "GetHealth": GOOD_HEALTH, "ListTracingPolicies": b""}
    tetragon.answers[method] = answer
    w, status = await report(cluster, tetragon)
    assert w.stats.errors["internal"] == 0, w.stats.last_error
    assert w.stats.errors["tetragon"] == 1
    assert status["capabilities"]["tetragon"]["reachable"] is False
    assert status["policies"] == []
    ready = condition({"status": status}, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TetragonUnreachable")
    assert f"{method}: Tetragon's answer could not be decoded" in ready["message"]


async def test_a_decodable_answer_is_listed_as_before(cluster: Cluster, tetragon: Tetragon) -> None:
    listed = sensors_pb2.ListTracingPoliciesResponse(
        policies=[sensors_pb2.TracingPolicyStatus(name="stellaops-web", state=sensors_pb2.TP_STATE_ENABLED)]
    )
    tetragon.answers["GetVersion"] = GOOD_VERSION
    tetragon.answers["ListTracingPolicies"] = listed.SerializeToString()
    w, status = await report(cluster, tetragon)
    assert w.stats.errors["internal"] == 0
    assert status["capabilities"]["tetragon"]["reachable"] is True
    assert [(p["name"], p["state"]) for p in status["policies"]] == [("stellaops-web", "ENABLED")]
