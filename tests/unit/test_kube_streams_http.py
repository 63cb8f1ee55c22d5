"""kube/streams_http.py, the agent's HTTP/1.1 client without aiohttp, against a raw socket server.

The server is asyncio's own (no HTTP library): it records each request as bytes and answers
with bytes the test writes, so every framing the client must read (Content-Length, chunked
with extensions and trailers, to the end of the stream, an interim 1xx, 204) and every way a
server can go wrong (not HTTP, endless headers, a short body, a bad chunk size, a body over
the limit, no answer at all) is exact. A bad answer is an ``HttpError`` (an OSError: the
agent's ObservationNode writer counts it as a Kubernetes error and retries), never a hang
past the timeout, never a wrong body. Through ``KubeClient(..., transport="streams")``: a
throttled request is sent again after ``Retry-After``, a 404 reads as "no object", and the
JSON sent and received is the same as over aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.agent.pod_view import PodViewLister
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.kube import streams_http
from stellaops_runtime.kube.client import Connection, KubeClient
from stellaops_runtime.kube.resources import NODES, OBSERVATION_NODES
from stellaops_runtime.kube.streams_http import HttpError
from stellaops_runtime.kube.transport import StreamsTransport


@asynccontextmanager
async def _server(answers: list[bytes | None]) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server answering its n-th connection with answers[n] (None: never answer)."""
    seen: list[bytes] = []
    hold = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        seen.append(head + await reader.readexactly(length))
        answer = answers[min(len(seen), len(answers)) - 1]
        if answer is None:
            await hold.wait()
        else:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        hold.set()
        server.close()
        await server.wait_closed()


async def _get(answers: list[bytes | None], **kw: object) -> tuple[streams_http.Response, list[bytes]]:
    async with _server(answers) as (url, seen):
        resp = await streams_http.request("GET", url + "/api/v1/nodes/n1", headers={"Accept": "x"}, **kw)  # type: ignore[arg-type]
        return resp, seen


async def test_a_request_as_sent_and_a_content_length_body() -> None:
    async with _server(
        [b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}']
    ) as (
        url,
        seen,
    ):
        resp = await streams_http.request(
            "PATCH",
            url + "/apis/x/v1/things/a%2Fb",
            headers={"Authorization": "bearer t", "Content-Type": "application/merge-patch+json"},
            data='{"é":1}',
            params={"labelSelector": "a=b,c", "limit": "5"},
        )
    assert (resp.status, resp.text, resp.headers["content-type"]) == (201, '{"a":1}', "application/json")
    port = url.rsplit(":", 1)[1]
    body = '{"é":1}'.encode()
    assert seen == [
        b"PATCH /apis/x/v1/things/a%2Fb?labelSelector=a%3Db%2Cc&limit=5 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"Authorization: bearer t\r\nContent-Type: application/merge-patch+json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    ]


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'3;ext=1\r\n{"a\r\n4\r\n":1}\r\n0\r\nX-T: 1\r\n\r\n',
            '{"a":1}',
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nto the end", "to the end"),  # no length: the body ends with the stream
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", ""),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nX: a\r\nX: b\r\n\r\nok", "ok"),
    ],
)
async def test_every_framing_reads_the_same_body(answer: bytes, text: str) -> None:
    resp, _ = await _get([answer])
    assert resp.text == text


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"SSH-2.0-OpenSSH_9\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (
            b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n",
            "over the client's limit|over 65536",
        ),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: aaaa\r\n" * 6000 + b"\r\n", "header section over 65536"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "malformed response header"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            "closed the connection in the middle of a response body",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length that is not a number"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a hexadecimal number"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n", "not followed by CRLF"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "in the middle of a response body"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "closed the connection in the middle of a response"),
        (b"", "closed the connection in the middle of a response"),
    ],
)
async def test_a_bad_answer_is_an_http_error(answer: bytes, why: str) -> None:
    with pytest.raises(HttpError, match=why) as e:
        await _get([answer])
    assert isinstance(e.value, OSError)


async def test_a_body_over_the_limit_is_refused_in_every_framing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams_http, "MAX_BODY_BYTES", 8)
    for answer in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n4\r\n6789\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n123456789",
    ):
        with pytest.raises(HttpError, match="over 8 bytes"):
            await _get([answer])


async def test_no_answer_ends_at_the_timeout() -> None:
    with pytest.raises(TimeoutError):
        await _get([None], timeout=0.5)


@pytest.mark.parametrize(
    "make",
    [
        lambda url: streams_http.request("GET", url + "/x", headers={"X-A": "v\r\nX-Injected: 1"}),
        lambda url: streams_http.request("GET", url + "/a b", headers={}),
        lambda url: streams_http.request("GET", "ftp://127.0.0.1/x", headers={}),
    ],
)
async def test_a_request_it_will_not_send(make: Callable[[str], object]) -> None:
    async with _server([b"HTTP/1.1 200 OK\r\n\r\n"]) as (url, seen):
        with pytest.raises(HttpError):
            await make(url)  # type: ignore[misc]
    assert seen == []


def _json(status: int, body: object, *extra: str) -> bytes:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return (head + "".join(f"{h}\r\n" for h in extra) + "\r\n").encode() + data


async def test_kube_client_on_streams_retries_a_throttled_request_and_reads_404_as_none() -> None:
    answers: list[bytes | None] = [
        _json(429, {"kind": "Status", "code": 429}, "Retry-After: 0"),
        _json(200, {"kind": "Node", "metadata": {"name": "n1"}}),
        _json(404, {"kind": "Status", "code": 404, "reason": "NotFound"}),
        _json(201, {"kind": "ObservationNode", "metadata": {"name": "n1"}}),
    ]
    async with _server(answers) as (url, seen):
        conn = Connection(server=url, source="test", authorization="Bearer tok")
        async with KubeClient(conn, transport="streams", user_agent="ua/1") as kube:
            node = await kube.get(NODES, name="n1")
            missing = await kube.get(OBSERVATION_NODES, name="n2")
            made = await kube.create(OBSERVATION_NODES, {"metadata": {"name": "n1"}})
    assert node == {"kind": "Node", "metadata": {"name": "n1"}} and missing is None
    assert made["metadata"]["name"] == "n1"
    assert kube.stats.errors == {429: 1, 404: 1}
    assert len(seen) == 4 and all(
        b"User-Agent: ua/1\r\n" in s and b"Authorization: Bearer tok\r\n" in s for s in seen
    )
    assert seen[3].startswith(b"POST /apis/" + OBSERVATION_NODES.path().encode()[6:])
    assert seen[3].endswith(b'{"metadata":{"name":"n1"}}')


async def test_the_agents_kubernetes_users_take_the_streams_transport(tmp_path: Path) -> None:
    # The ObservationNode writer (every node) and the pod view (native nodes): neither loads aiohttp.
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    lister = PodViewLister(cast(Any, None), node_name="n", kubeconfig=str(kubeconfig))
    writer = ObservationNodeWriter(
        node_name="n",
        config=ObservationNodeConfig(enabled=True, kubeconfig=str(kubeconfig)),
        tetragon=TetragonConfig(address="127.0.0.1:1"),
    )
    for kube in (await lister._connect(), await writer._client()):
        assert isinstance(kube._transport, StreamsTransport)
        await kube.close()
