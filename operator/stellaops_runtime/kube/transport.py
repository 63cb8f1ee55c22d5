"""How kube/client.py sends a request: aiohttp (the operator's) or plain asyncio streams (the agent's).

Why two (issue 13): aiohttp costs a process ~10 MB. The operator has it anyway (kopf) and
makes many requests, which its pooled connections serve well; a node's agent makes a few
(its ObservationNode: reads at start-up, one status write per heartbeat) and loads it only
for them. ``KubeClient(..., transport="streams")`` sends each request on a connection of its
own (kube/streams_http.py) and never imports aiohttp. Both send the same method, URL, query,
headers and body, and give back the status, the body's text and ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stellaops_runtime.kube.client import Connection

TRANSPORTS = ("aiohttp", "streams")


class Transport(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        *,
        data: str | None,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
    ) -> tuple[int, str, str | None]:
        """(status, body text, the Retry-After header or None)."""
        ...

    def open(self) -> None: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """A pooled aiohttp session (opened when the client is entered, or at the first request)."""

    def __init__(self, connection: Connection, *, timeout: float, user_agent: str) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self.connection = connection
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent
        self._session: Any = None

    def open(self) -> None:
        aiohttp = self._aiohttp
        if self._session is None or self._session.closed:
            auth = None
            if self.connection.username and self.connection.password:
                auth = aiohttp.BasicAuth(self.connection.username, self.connection.password)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.connection.ssl_context(), limit=64),
                timeout=self._timeout,
                auth=auth,
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            )

    async def send(
        self,
        method: str,
        url: str,
        *,
        data: str | None,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
    ) -> tuple[int, str, str | None]:
        self.open()
        async with self._session.request(method, url, data=data, params=params, headers=headers) as resp:
            return resp.status, await resp.text(), resp.headers.get("Retry-After")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class StreamsTransport:
    """One connection per request on asyncio streams (kube/streams_http.py); no aiohttp."""

    def __init__(self, connection: Connection, *, timeout: float, user_agent: str) -> None:
        self.connection = connection
        self._timeout = timeout
        self._user_agent = user_agent
        self._ssl: Any = None

    def open(self) -> None:
        if (
            self._ssl is None
        ):  # the CA and client certificate files are read once, as aiohttp's connector does
            self._ssl = self.connection.ssl_context()

    async def send(
        self,
        method: str,
        url: str,
        *,
        data: str | None,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
    ) -> tuple[int, str, str | None]:
        from stellaops_runtime.kube import streams_http

        self.open()
        sent = {"User-Agent": self._user_agent, "Accept": "application/json", **headers}
        conn = self.connection
        if "Authorization" not in sent and conn.username and conn.password:
            sent["Authorization"] = streams_http.basic_auth(conn.username, conn.password)
        resp = await streams_http.request(
            method, url, headers=sent, data=data, params=params, ssl_context=self._ssl, timeout=self._timeout
        )
        return resp.status, resp.text, resp.headers.get("retry-after")

    async def close(self) -> None:
        self._ssl = None


def make_transport(kind: str, connection: Connection, *, timeout: float, user_agent: str) -> Transport:
    if kind == "streams":
        return StreamsTransport(connection, timeout=timeout, user_agent=user_agent)
    if kind == "aiohttp":
        return AiohttpTransport(connection, timeout=timeout, user_agent=user_agent)
    raise ValueError(f"unknown transport {kind!r} (one of {', '.join(TRANSPORTS)})")
