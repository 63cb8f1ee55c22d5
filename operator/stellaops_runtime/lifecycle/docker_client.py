"""A small async client of the Docker Engine API over its unix socket.

Only what the lifecycle observer needs: the event stream (``GET /events``),
the container list and inspect, and image inspect. HTTP/1.1 is spoken
directly over ``asyncio.open_unix_connection`` (one request per connection,
``Connection: close``), bodies by Content-Length or chunked encoding. The
event stream is newline-separated JSON; ``events`` hands back each line's
bytes and leaves decoding to the observer, which counts what does not parse.
Every size is bounded: a response head, a chunk or an event line beyond its
limit is a ``DockerError``, not unbounded memory.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncGenerator
from typing import Any

DEFAULT_DOCKER_ADDRESS = "/var/run/docker.sock"
API_VERSION = "v1.41"  # Docker 20.10; newer engines accept it
MAX_HEAD_BYTES = 64 << 10
MAX_BODY_BYTES = 32 << 20
MAX_EVENT_BYTES = 1 << 20


class DockerError(Exception):
    """The engine answered with an error status or with something that is not HTTP."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def socket_path(address: str) -> str:
    """``unix:///var/run/docker.sock`` or a plain path -> the path."""
    return address.removeprefix("unix://") if address.startswith("unix://") else address


class DockerClient:
    """Requests to one Docker Engine socket."""

    def __init__(self, address: str = DEFAULT_DOCKER_ADDRESS, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout

    async def _open(
        self, path: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, dict[str, str]]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(socket_path(self.address), limit=MAX_EVENT_BYTES + 1024),
                self.timeout,
            )
        except TimeoutError:
            raise ConnectionError(
                f"no connection to docker at {self.address} within {self.timeout}s"
            ) from None
        writer.write(
            f"GET /{API_VERSION}{path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(self._head(reader), self.timeout)
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            writer.close()
            raise DockerError(f"not an HTTP response: {status_line[:100]!r}")
        headers = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return reader, writer, int(parts[1]), headers

    @staticmethod
    async def _head(reader: asyncio.StreamReader) -> str:
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            line = await reader.readline()
            if not line:
                raise ConnectionError("docker closed the connection before answering")
            data += line
            if len(data) > MAX_HEAD_BYTES:
                raise DockerError("response head too large")
        return data[:-4].decode("latin-1")

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncGenerator[bytes, None]:
        """The body's bytes as they arrive (chunked or until Content-Length / close)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await reader.readline()
                if not size_line:
                    raise ConnectionError("docker ended the stream")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise DockerError(f"bad chunk size {size_line[:40]!r}") from None
                if size > MAX_BODY_BYTES:
                    raise DockerError(f"chunk of {size} bytes is too large")
                if size == 0:
                    await reader.readline()
                    return
                yield await reader.readexactly(size)
                await reader.readexactly(2)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_BODY_BYTES:
                raise DockerError(f"body of {length} bytes is too large")
            yield await reader.readexactly(length)
        else:
            while chunk := await reader.read(65536):
                yield chunk

    async def get_json(self, path: str) -> Any:
        """GET ``path``; the decoded JSON body. DockerError (with ``status``) on an error status."""
        reader, writer, status, headers = await self._open(path)
        try:
            body = b""
            async for chunk in self._chunks(reader, headers):
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise DockerError("response body too large")
        finally:
            writer.close()
        if status >= 400:
            try:
                message = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                message = body[:200].decode("utf-8", "replace")
            raise DockerError(f"{path}: HTTP {status}: {message}", status)
        return json.loads(body)

    async def get_or_none(self, path: str) -> Any:
        """As ``get_json``, ``None`` on 404."""
        try:
            return await self.get_json(path)
        except DockerError as e:
            if e.status == 404:
                return None
            raise

    async def ping(self) -> None:
        _, writer, status, _ = await self._open("/_ping")
        writer.close()
        if status != 200:
            raise DockerError(f"ping: HTTP {status}", status)

    async def events(
        self, filters: dict[str, list[str]], *, since_ns: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Each event of ``GET /events`` as the bytes of one JSON line (oversized lines are a DockerError).

        ``since_ns`` (nanoseconds since the epoch): the Engine first replays the events it logged
        from then on (its last 256 events at most), then follows."""
        params = {"filters": json.dumps(filters)}
        if since_ns is not None:
            params["since"] = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
        query = urllib.parse.urlencode(params)
        reader, writer, status, headers = await self._open(f"/events?{query}")
        try:
            if status != 200:
                raise DockerError(f"events: HTTP {status}", status)
            pending = b""
            async for chunk in self._chunks(reader, headers):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield line
                if len(pending) > MAX_EVENT_BYTES:
                    raise DockerError(f"event line over {MAX_EVENT_BYTES} bytes")
            raise ConnectionError("docker ended the event stream")
        finally:
            writer.close()
