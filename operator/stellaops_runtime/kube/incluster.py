"""The pod's service-account credentials, read from their files without the ``kubernetes`` package.

Why this module exists (issue 13): the agent writes its ObservationNode on every node, and it
took its in-cluster credentials from ``kubernetes.config.load_incluster_config``. Importing that
loads the whole ``kubernetes`` package (its API client and models, requests, urllib3, oauthlib,
websocket-client, dateutil, pydantic): ~20 MB of the idle agent, on every node, for reading
two files and two environment variables. This reader does exactly what that loader does, with
the same checks and the same header:

- ``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT`` set and not empty; the server is
  ``https://host:port`` (an IPv6 host, or one with a zone, in brackets);
- the token file exists and is not empty; the ``Authorization`` header is ``bearer <token>``;
  bound service-account tokens rotate, so :meth:`ServiceAccount.authorization` reads the file
  again each time the client refreshes (kube/client.py: at most every
  ``TOKEN_REFRESH_SECONDS``, and after a 401);
- the CA file exists and is not empty; TLS verifies the server against it.

Anything else (no service host, missing files) raises :class:`InClusterError`, and the client
falls back to a kubeconfig through the ``kubernetes`` package, as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DIRECTORY = "/var/run/secrets/kubernetes.io/serviceaccount"  # where the kubelet mounts it
HOST_ENV, PORT_ENV = "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"


class InClusterError(RuntimeError):
    """The in-cluster credentials are not there or not usable (the message names which part)."""


def _read(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise InClusterError(f"service account {what} file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        why = type(e).__name__
        raise InClusterError(f"service account {what} file {path} is unreadable: {why}") from None
    if not text:
        raise InClusterError(f"service account {what} file {path} is empty")
    return text


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host or "%" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """Where the API server is and the files that authenticate this pod to it."""

    server: str
    token_path: str
    ca_path: str

    @classmethod
    def load(cls, environ: Mapping[str, str], directory: str | None = None) -> ServiceAccount:
        """The pod's credentials (blocking: reads files); raises :class:`InClusterError`."""
        host, port = environ.get(HOST_ENV), environ.get(PORT_ENV)
        if host is None or port is None:
            raise InClusterError("service host/port is not set")
        if not host or not port:
            raise InClusterError("service host/port is set but empty")
        account = cls(
            server=f"https://{_join_host_port(host, port)}",
            token_path=os.path.join(directory or DIRECTORY, "token"),
            ca_path=os.path.join(directory or DIRECTORY, "ca.crt"),
        )
        account.authorization()  # the token must be there now, as for the kubernetes loader
        _read(account.ca_path, "CA")
        return account

    def authorization(self) -> str:
        """The ``Authorization`` header from the token file as it is now (blocking)."""
        return f"bearer {_read(self.token_path, 'token')}"
