"""An asyncio client for the few Kubernetes API calls the operator and the agent make.

Why not the ``kubernetes`` package's API classes: they block, and both the
operator (kopf) and the agent run on one event loop, so every call would need
a thread hop. This client speaks the REST API over aiohttp (what kopf itself
uses), or for the agent over plain asyncio streams (kube/transport.py).
Credentials: in a cluster, the pod's service account files (kube/incluster.py,
without the ``kubernetes`` package: ~20 MB of a node's agent); else a kubeconfig
(``$KUBECONFIG`` or ``~/.kube/config``) through the ``kubernetes`` package's loader,
which may run an exec credential plugin. Both run in a daemon thread, as does the
token refresh (tokens rotate): at most every ``TOKEN_REFRESH_SECONDS``, and after a 401. A
daemon's, not ``asyncio.to_thread``'s: a plugin that hangs (the loader waits for it with no
timeout) would have held ``asyncio.run``'s end and the process's exit after its caller gave up.

A server that throttles (429 Too Many Requests, as API Priority and Fairness
answers, or 503 with a ``Retry-After``) is waited for as it asks: the
request is sent again after the server's ``Retry-After`` (1 s when it gives
none), at most ``THROTTLE_RETRIES`` times and only when the wait is at most
``MAX_THROTTLE_WAIT`` seconds; otherwise the ``ApiError`` carries the wait
(``retry_after``, capped at ``RETRY_AFTER_CAP``) so the caller's next attempt
comes no sooner (the operator's scheduler honours it). A throttled request
was not processed, so sending it again is safe.

Writes are JSON merge patches (``application/merge-patch+json``), which every
API server and kmock's emulator apply the same way. Every request is counted
by verb and resource, so tests and the benchmark can prove that an unchanged
reconcile writes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.kube.errors import ApiError, api_error
from stellaops_runtime.kube.events import event_body
from stellaops_runtime.kube.incluster import InClusterError, ServiceAccount
from stellaops_runtime.kube.resources import EVENTS, Resource
from stellaops_runtime.kube.throttle import (
    DEFAULT_THROTTLE_WAIT,
    MAX_THROTTLE_WAIT,
    THROTTLE_RETRIES,
    retry_after_seconds,
)
from stellaops_runtime.kube.transport import make_transport
from stellaops_runtime.store.threads import run_detached

log = logging.getLogger(__name__)

TOKEN_REFRESH_SECONDS = 30.0
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"  # RFC 6902: ops applied in order, a failed "test" refuses all
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
WRITE_VERBS = frozenset({"create", "patch", "delete"})


class KubeConfigError(RuntimeError):
    """No usable credentials: not in a cluster and no readable kubeconfig."""


@dataclass(slots=True)
class RequestStats:
    """Requests sent, by verb (get, list, create, patch, delete) and by ``verb resource``."""

    by_verb: collections.Counter[str] = field(default_factory=collections.Counter)
    by_resource: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[int] = field(default_factory=collections.Counter)

    @property
    def writes(self) -> int:
        return sum(n for verb, n in self.by_verb.items() if verb in WRITE_VERBS)


def _kubernetes_config(*, kubeconfig: str, context: str | None) -> tuple[Any, str]:
    """A kubeconfig's ``kubernetes.client.Configuration`` and its path (blocking: files, exec plugins)."""
    import kubernetes.client
    import kubernetes.config

    cfg = kubernetes.client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG", "") or os.path.expanduser("~/.kube/config")
    try:
        kubernetes.config.load_kube_config(
            config_file=path, context=context, client_configuration=cfg, persist_config=False
        )
    except (kubernetes.config.ConfigException, OSError) as e:
        why = redact(e)  # the loader's message may quote the server URL or a token
        raise KubeConfigError(
            f"no Kubernetes credentials: not running in a cluster and kubeconfig {path!r} is unusable: {why}"
        ) from None
    return cfg, f"kubeconfig {path}"


def _bearer(cfg: Any) -> str | None:
    """The Authorization header value (runs the loader's refresh hook: may block)."""
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    if not header:
        return None
    return header if " " in header else f"Bearer {header}"


@dataclass(slots=True)
class Connection:
    """Where and how to reach the API server (from the ``kubernetes`` package's loaders)."""

    server: str
    source: str
    ca_path: str | None = None
    insecure: bool = False
    cert_path: str | None = None
    key_path: str | None = None
    username: str | None = None
    password: str | None = None
    authorization: str | None = None
    _config: Any = None

    def __repr__(self) -> str:  # never the password, the token, or a password in the server URL
        return f"Connection(server={self.shown_server!r}, source={self.source!r})"

    @property
    def shown_server(self) -> str:
        """The server URL for messages: a password in it (``https://user:pw@host``) masked."""
        return redact(self.server)

    @classmethod
    def load(cls, *, kubeconfig: str = "", context: str | None = None) -> Connection:
        """Credentials from the cluster or a kubeconfig. Blocking; raises KubeConfigError."""
        if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                account = ServiceAccount.load(os.environ)
            except InClusterError as e:
                log.debug("in-cluster config unusable (%s); trying a kubeconfig", e)
            else:
                return cls(
                    server=account.server,
                    source="in-cluster service account",
                    ca_path=account.ca_path,
                    authorization=account.authorization(),
                    _config=account,
                )
        cfg, source = _kubernetes_config(kubeconfig=kubeconfig, context=context)
        return cls(
            server=str(cfg.host).rstrip("/"),
            source=source,
            ca_path=cfg.ssl_ca_cert or None,
            insecure=not cfg.verify_ssl,
            cert_path=cfg.cert_file or None,
            key_path=cfg.key_file or None,
            username=cfg.username or None,
            password=cfg.password or None,
            authorization=_bearer(cfg),
            _config=cfg,
        )

    @property
    def refreshes(self) -> bool:
        """Whether the token may change: a service account's (it rotates), a kubeconfig's refresh hook."""
        if isinstance(self._config, ServiceAccount):
            return True
        return self._config is not None and self._config.refresh_api_key_hook is not None

    def refresh(self) -> None:
        """Re-read the token: the service account's file, or the loader's refresh hook (blocking)."""
        if isinstance(self._config, ServiceAccount):
            try:
                self.authorization = self._config.authorization()
            except InClusterError as e:
                raise KubeConfigError(str(e)) from None
        elif self._config is not None:
            self.authorization = _bearer(self._config)

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https:"):
            return False
        if self.insecure:
            return False
        ctx = (
            ssl.create_default_context(cafile=self.ca_path) if self.ca_path else ssl.create_default_context()
        )
        if self.cert_path and self.key_path:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


class KubeClient:
    """Async CRUD on Kubernetes objects; use as ``async with KubeClient(conn) as kube``."""

    def __init__(
        self,
        connection: Connection,
        *,
        timeout: float = 30.0,
        user_agent: str = "",
        throttle_retries: int = THROTTLE_RETRIES,
        max_throttle_wait: float = MAX_THROTTLE_WAIT,
        transport: str = "aiohttp",
    ) -> None:
        """``transport``: ``aiohttp`` (pooled connections) or ``streams`` (no aiohttp: kube/transport.py)."""
        self.connection = connection
        self.throttle_retries = throttle_retries
        self.max_throttle_wait = max_throttle_wait
        self.stats = RequestStats()
        ua = user_agent or "stellaops-runtime"
        self._transport = make_transport(transport, connection, timeout=timeout, user_agent=ua)
        self._refreshed_at = time.monotonic()
        self._refresh_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, *, kubeconfig: str = "", context: str | None = None, **kw: Any) -> KubeClient:
        """Load credentials (in a thread) and build a client; raises KubeConfigError."""
        load = functools.partial(Connection.load, kubeconfig=kubeconfig, context=context)
        conn = await run_detached(load, name="kube-credentials")
        return cls(conn, **kw)

    async def __aenter__(self) -> KubeClient:
        self._transport.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._transport.close()

    async def _refresh(self, *, force: bool) -> None:
        if self.connection._config is None or (not self.connection.refreshes and not force):
            return
        async with self._refresh_lock:
            if not force and time.monotonic() - self._refreshed_at < TOKEN_REFRESH_SECONDS:
                return
            await run_detached(self.connection.refresh, name="kube-token")
            self._refreshed_at = time.monotonic()

    async def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        resource: Resource,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> Any:
        """One API call; returns the decoded JSON body. Raises ApiError, or the transport's I/O errors
        (aiohttp's; OSError and TimeoutError on streams)."""
        self._transport.open()
        await self._refresh(force=False)
        data = json.dumps(body, separators=(",", ":")) if body is not None else None
        url = self.connection.server + path
        refreshed = False  # one token refresh after a 401
        throttled = 0  # waits for the server's Retry-After so far
        while True:
            headers = {"Content-Type": content_type} if data is not None else {}
            if accept:
                headers["Accept"] = accept
            if self.connection.authorization:
                headers["Authorization"] = self.connection.authorization
            self.stats.by_verb[verb] += 1
            self.stats.by_resource[f"{verb} {resource}"] += 1
            status, text, retry_header = await self._transport.send(
                method, url, data=data, params=params, headers=headers
            )
            retry_after = retry_after_seconds(retry_header)
            if status == 401 and not refreshed and self.connection._config is not None:
                self.stats.errors[401] += 1
                refreshed = True
                await self._refresh(force=True)
                continue
            if status >= 400:
                self.stats.errors[status] += 1
                err = api_error(status, text, method=method, path=path, retry_after=retry_after)
                if err.throttled:
                    wait = retry_after if retry_after is not None else DEFAULT_THROTTLE_WAIT
                    if throttled < self.throttle_retries and wait <= self.max_throttle_wait:
                        throttled += 1
                        log.debug("%s %s throttled (%s): sent again in %gs", method, path, status, wait)
                        await asyncio.sleep(wait)
                        continue
                    err.retry_after = wait
                raise err
            return json.loads(text) if text else None

    # -- object verbs ----------------------------------------------------------

    async def get(self, resource: Resource, *, name: str, namespace: str | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request(
                "GET", resource.path(namespace=namespace, name=name), verb="get", resource=resource
            )
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
    ) -> list[dict]:
        """Every object (with ``metadata_only``, their metadata: a server that cannot gives all)."""
        params = {"labelSelector": label_selector} if label_selector else {}
        if field_selector:
            params["fieldSelector"] = field_selector
        doc = await self.request(
            "GET",
            resource.path(namespace=namespace),
            verb="list",
            resource=resource,
            params=params or None,
            accept=METADATA_LIST if metadata_only else None,
        )
        return list((doc or {}).get("items") or [])

    async def create(self, resource: Resource, body: Mapping[str, Any]) -> dict:
        namespace = (body.get("metadata") or {}).get("namespace") if resource.namespaced else None
        return await self.request(
            "POST", resource.path(namespace=namespace), verb="create", resource=resource, body=body
        )

    async def patch(
        self,
        resource: Resource,
        *,
        name: str,
        namespace: str | None = None,
        patch: Mapping[str, Any],
        subresource: str = "",
    ) -> dict:
        """A JSON merge patch (``None`` values remove keys); ``subresource="status"`` for status."""
        return await self.request(
            "PATCH",
            resource.path(namespace=namespace, name=name, subresource=subresource),
            verb="patch",
            resource=resource,
            body=patch,
            content_type=MERGE_PATCH,
        )

    async def delete(
        self, resource: Resource, *, name: str, namespace: str | None = None, uid: str | None = None
    ) -> bool:
        """Delete (background propagation); False when it was already gone.

        With ``uid`` the API server deletes only the object of that uid (a precondition:
        409 Conflict when the name now belongs to another object).
        """
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self.request(
                "DELETE",
                resource.path(namespace=namespace, name=name),
                verb="delete",
                resource=resource,
                body=options,
            )
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return True

    async def post_event(
        self,
        involved: Mapping[str, Any],
        *,
        type: str,
        reason: str,
        message: str,
        component: str,
    ) -> dict:
        """A core/v1 Event about ``involved`` (a whole object); cluster-scoped objects' go to ``default``."""
        event = event_body(involved, type=type, reason=reason, message=message, component=component)
        return await self.create(EVENTS, event)
