"""A small, strict HTTP/1.1 server on plain asyncio for the agent's three GET endpoints.

Why it exists (issue 13): aiohttp's server cost the idle agent 9-10 MB, on every
node, to answer ``/metrics``, ``/healthz`` and ``/readyz``. What those need is
small: GET (and HEAD) of a fixed path, no request body, a bounded response. This
module serves exactly that and refuses everything else early, because the port
is reachable from the node's network:

- the request line is at most ``max_request_line`` bytes (else 414), the whole
  head at most ``max_head`` bytes and ``max_headers`` fields (else 431);
- a request head must be complete within ``request_timeout`` seconds of the
  server starting to wait for it (a slowloris client gets 408 and is closed,
  an idle keep-alive connection is closed silently); a client that does not
  read its response is dropped after ``write_timeout``;
- at most ``max_connections`` connections are served at once; one more gets
  503 and is closed;
- malformed input (no CRLF framing, a bad method token, a target that is not
  a path, a field with whitespace before its colon, folded lines, control
  bytes, a missing ``Host`` in HTTP/1.1, a bad or duplicated
  ``Content-Length``, any ``Transfer-Encoding``) gets 400; a request body
  gets 413; another HTTP version 505; an unknown path 404; a method other
  than GET or HEAD 405 (with ``Allow``). Every error response closes the
  connection.

HTTP/1.1 connections stay open between requests unless the client says
``Connection: close``; HTTP/1.0 ones close unless it says ``keep-alive``. Each
refusal is counted in :attr:`HttpServer.rejected` by reason (the agent exports
them as ``stellaops_runtime_http_rejected_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# (status, content type, body)
Response = tuple[int, str, bytes]
Handler = Callable[[], Awaitable[Response]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_METHOD = re.compile(rb"[A-Z]{1,20}")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[\x21-\x7e]*")  # origin-form: a path (and query), visible ASCII only
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control bytes other than HTAB
_DIGITS = re.compile(rb"[0-9]{1,18}")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line: int = 8 << 10
    max_head: int = 16 << 10
    max_headers: int = 64
    request_timeout: float = 10.0
    write_timeout: float = 30.0
    max_connections: int = 64


class _Refused(Exception):
    """A request answered with an error status; the connection then closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Request:
    method: bytes
    path: str
    keep_alive: bool


def http_date(now: float | None = None) -> str:
    """RFC 9110 IMF-fixdate (not locale-dependent, unlike strftime's %a and %b)."""
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _check_request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    parts = line.split(b" ")
    if len(parts) != 3 or not _METHOD.fullmatch(parts[0]):
        raise _Refused(400, "bad_request_line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version):
            raise _Refused(505, "version")
        raise _Refused(400, "bad_request_line")
    if not _TARGET.fullmatch(target):
        raise _Refused(400, "bad_target")
    return method, target, version


def parse_head(head: bytes, limits: Limits) -> _Request:
    """The request in ``head`` (up to, not including, the blank line); _Refused when invalid."""
    lines = head.split(b"\r\n")
    if len(lines[0]) > limits.max_request_line:
        raise _Refused(414, "request_line_too_long")
    method, target, version = _check_request_line(lines[0])
    if len(lines) - 1 > limits.max_headers:
        raise _Refused(431, "too_many_headers")
    fields: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # also: folded lines, space before the colon
            raise _Refused(400, "bad_header")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise _Refused(400, "bad_header")
        fields.setdefault(name.lower(), []).append(value)
    if version == b"HTTP/1.1" and len(fields.get(b"host", ())) != 1:
        raise _Refused(400, "host")
    if b"transfer-encoding" in fields:
        raise _Refused(400, "transfer_encoding")
    lengths = set(fields.get(b"content-length", ()))
    if len(lengths) > 1 or any(not _DIGITS.fullmatch(v) for v in lengths):
        raise _Refused(400, "content_length")
    if lengths and int(lengths.pop()) > 0:
        raise _Refused(413, "body")
    tokens = {t.strip().lower() for v in fields.get(b"connection", ()) for t in v.split(b",")}
    keep = b"close" not in tokens and (version == b"HTTP/1.1" or b"keep-alive" in tokens)
    path = target.split(b"?", 1)[0].decode("ascii")
    return _Request(method, path, keep)


def _early_check(buf: bytes | bytearray, limits: Limits) -> None:
    """Refuse a head that cannot become valid, before waiting for the rest of it."""
    if _BARE_LF.search(buf):
        raise _Refused(400, "bare_lf")
    end = buf.find(b"\r\n")
    if end < 0:  # the request line is still arriving: its method so far must be a token
        if len(buf) > limits.max_request_line:
            raise _Refused(414, "request_line_too_long")
        sp = buf.find(b" ")
        method = bytes(buf if sp < 0 else buf[:sp])
        if (method or sp >= 0) and not _METHOD.fullmatch(method[:20] if sp < 0 else method):
            raise _Refused(400, "bad_request_line")
    else:
        if end > limits.max_request_line:
            raise _Refused(414, "request_line_too_long")
        _check_request_line(bytes(buf[:end]))
    if len(buf) > limits.max_head:
        raise _Refused(431, "head_too_large")


class HttpServer:
    """Serves ``routes`` (path -> handler) over HTTP/1.1 on one listening socket."""

    def __init__(self, routes: dict[str, Handler], limits: Limits | None = None) -> None:
        self.routes = routes
        self.limits = limits or Limits()
        self.rejected: Counter[str] = Counter()  # refusals by reason
        self.requests = 0
        self.active = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port. OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(self._accept, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def cleanup(self, wait_seconds: float = 5.0) -> None:
        """Stop listening and close every connection; a handler still running after ``wait_seconds`` (a
        scrape waiting for a busy pipeline at the agent's shutdown deadline) is cancelled, not waited
        for."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()  # its handler sees the connection lost and returns
        if self._tasks:
            _, left = await asyncio.wait(list(self._tasks), timeout=wait_seconds)
            for t in left:
                t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            if self.active >= self.limits.max_connections:
                self.rejected["connections"] += 1
                await self._send(writer, 503, "text/plain", b"too many connections\n", keep=False, head=False)
                return
            self.active += 1
            try:
                await self._serve(reader, writer)
            finally:
                self.active -= 1
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # The loop is shutting down. This task is a connection's top level, started by
            # asyncio.start_server, whose done-callback would log a cancelled task as an error.
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()  # what the client sent beyond the request being answered (pipelining)
        while True:
            try:
                head = await self._read_head(reader, buf)
                if head is None:  # the client closed, or stayed idle: nothing to answer
                    return
                req = parse_head(head, self.limits)
            except _Refused as e:
                self.rejected[e.reason] += 1
                body = f"{e.reason}\n".encode()
                await self._send(writer, e.status, "text/plain", body, keep=False, head=False)
                await self._linger(reader, writer)
                return
            self.requests += 1
            status, ctype, body, extra = await self._answer(req)
            keep = req.keep_alive and status < 400
            await self._send(writer, status, ctype, body, keep=keep, head=req.method == b"HEAD", extra=extra)
            if not keep:
                return

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After refusing a request the client may still be sending (a huge head): closing at
        once would reset the connection and lose the answer. Half-close, then read and drop
        what still comes, for at most a second and 1 MiB."""
        if writer.can_write_eof():
            writer.write_eof()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(1.0, self.limits.request_timeout)
        dropped = 0
        while dropped < 1 << 20 and (remaining := deadline - loop.time()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(64 << 10), remaining)
            except TimeoutError:
                return
            if not chunk:
                return
            dropped += len(chunk)

    async def _answer(self, req: _Request) -> tuple[int, str, bytes, str]:
        handler = self.routes.get(req.path)
        if handler is None:
            self.rejected["not_found"] += 1
            return 404, "text/plain", b"not found\n", ""
        if req.method not in (b"GET", b"HEAD"):
            self.rejected["method"] += 1
            return 405, "text/plain", b"method not allowed\n", "Allow: GET, HEAD\r\n"
        try:
            status, ctype, body = await handler()
        except Exception:
            log.exception("HTTP handler for %s failed", req.path)
            self.rejected["handler_error"] += 1
            return 500, "text/plain", b"internal error\n", ""
        return status, ctype, body, ""

    async def _read_head(self, reader: asyncio.StreamReader, buf: bytearray) -> bytes | None:
        """The next request head without its final CRLFCRLF, taken out of ``buf`` (which keeps
        anything after it); None when the client closed or stayed idle."""
        deadline = asyncio.get_running_loop().time() + self.limits.request_timeout
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                if end > self.limits.max_head:
                    raise _Refused(431, "head_too_large")
                head = bytes(buf[:end])
                del buf[: end + 4]
                return head
            _early_check(buf[: self.limits.max_head + 4], self.limits)
            if len(buf) > self.limits.max_head:
                raise _Refused(431, "head_too_large")
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                chunk = await asyncio.wait_for(reader.read(4096), remaining)
            except TimeoutError:
                if buf:
                    raise _Refused(408, "timeout") from None
                self.rejected["idle_timeout"] += 1
                return None
            if not chunk:
                if buf:
                    self.rejected["incomplete"] += 1
                return None
            buf += chunk

    async def _send(self, writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes, *, keep: bool,
                    head: bool, extra: str = "") -> None:  # fmt: skip
        lines = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Date: {http_date()}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n{extra}\r\n"
        )
        writer.write(lines.encode("ascii") + (b"" if head else body))
        try:
            await asyncio.wait_for(writer.drain(), self.limits.write_timeout)
        except TimeoutError:
            self.rejected["write_timeout"] += 1
            writer.transport.abort()
            raise
