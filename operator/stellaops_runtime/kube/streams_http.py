"""One HTTP/1.1 request over plain asyncio streams: the agent's Kubernetes calls without aiohttp.

Why this module exists (issue 13): a node's agent writes its ObservationNode (one status write
per heartbeat, a few reads at start-up) through kube/client.py, whose aiohttp transport costs
the idle agent ~10 MB (aiohttp, yarl, multidict, attrs, ``email``, ``http.client``) on every
node. The agent already serves its endpoints on plain asyncio (agent/httpserver.py); this is the
client side for the few calls it makes, chosen with ``KubeClient(..., transport="streams")``.
The operator keeps aiohttp (kopf uses it, and it reuses connections).

One connection per request (``Connection: close``), TLS from the connection's context (the
service account's CA, client certificates). The answer's body is read by ``Content-Length``,
chunked transfer coding, or to the end of the stream. A response that is not HTTP/1.x, a header
section over 64 KiB, a body over 64 MiB, a connection closed early or a request header holding a
line break raise :class:`HttpError` (an ``OSError``, as a refused connection or a TLS failure
are); the whole exchange is bounded by ``timeout`` (``TimeoutError``).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class HttpError(OSError):
    """A response this client cannot read, or a request it will not send (the reason says which)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    text: str


def basic_auth(username: str, password: str) -> str:
    """The ``Authorization`` value for a kubeconfig's username and password."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _line(reader: asyncio.StreamReader, budget: list[int]) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        raise HttpError("the server closed the connection in the middle of a response") from e
    except asyncio.LimitOverrunError as e:
        raise HttpError("a response line over the client's limit") from e
    budget[0] -= len(line)
    if budget[0] < 0:
        raise HttpError(f"a response header section over {MAX_HEADER_BYTES} bytes")
    return line


async def _exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as e:
        raise HttpError("the server closed the connection in the middle of a response body") from e


async def _chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    budget = [MAX_HEADER_BYTES]  # chunk-size lines and trailers together
    while True:
        size_line = (await _line(reader, budget)).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise HttpError("a chunk size that is not a hexadecimal number") from None
        if size < 0:
            raise HttpError("a negative chunk size")
        if size == 0:
            while (await _line(reader, budget)).strip():  # trailers, up to the empty line
                pass
            return b"".join(parts)
        total += size
        if total > max_body:
            raise HttpError(f"a response body over {max_body} bytes")
        parts.append(await _exactly(reader, size))
        if (await _exactly(reader, 2)) != b"\r\n":
            raise HttpError("a chunk not followed by CRLF")


async def _to_end(reader: asyncio.StreamReader, max_body: int) -> bytes:
    """The body up to the end of the stream (``read(n)`` returns what has arrived so far)."""
    body = bytearray()
    while chunk := await reader.read(1 << 16):
        body += chunk
        if len(body) > max_body:
            raise HttpError(f"a response body over {max_body} bytes")
    return bytes(body)


async def _read_response(reader: asyncio.StreamReader, method: str, max_body: int) -> Response:
    while True:
        budget = [MAX_HEADER_BYTES]
        status_line = (await _line(reader, budget)).decode("latin-1").rstrip("\r\n")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while (line := (await _line(reader, budget)).decode("latin-1").rstrip("\r\n")) != "":
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpError(f"a malformed response header line: {line[:80]!r}")
            headers[name.lower()] = value.strip()
        if status >= 200:
            break  # a 1xx (interim) response is followed by the real one
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _chunked(reader, max_body)
    elif (length := headers.get("content-length")) is not None:
        if not length.isdigit():
            raise HttpError(f"a Content-Length that is not a number: {length[:40]!r}")
        if int(length) > max_body:
            raise HttpError(f"a response body over {max_body} bytes")
        body = await _exactly(reader, int(length))
    else:
        body = await _to_end(reader, max_body)
    return Response(status, headers, body.decode("utf-8", errors="replace"))


async def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    data: str | None = None,
    params: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | bool = False,
    timeout: float = 30.0,  # noqa: ASYNC109 (the whole exchange, as aiohttp's total timeout)
    max_body: int | None = None,  # None: MAX_BODY_BYTES
) -> Response:
    """Send one request and read its response (see the module docstring)."""
    limit = MAX_BODY_BYTES if max_body is None else max_body
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname
    shown_host = f"[{host}]" if ":" in host else host
    target = parts.path or "/"
    query = "&".join(q for q in (parts.query, urlencode(dict(params)) if params else "") if q)
    if query:
        target += "?" + query
    payload = data.encode() if data is not None else b""
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {shown_host}" + ("" if port == (443 if tls else 80) else f":{port}"),
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if data is not None:
        lines.append(f"Content-Length: {len(payload)}")
    lines.append("Connection: close")
    if any(c in line for line in lines for c in "\r\n") or " " in target:
        raise HttpError("a request line or header holding a line break or a space in the target")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    ctx: ssl.SSLContext | None = None
    if tls:
        ctx = ssl_context if isinstance(ssl_context, ssl.SSLContext) else _unverified()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=host if ctx is not None else None, limit=MAX_HEADER_BYTES
        )
        try:
            writer.write(head + payload)
            await writer.drain()
            return await _read_response(reader, method, limit)
        finally:
            writer.close()  # Connection: close; the transport finishes closing on its own
