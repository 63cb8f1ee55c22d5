"""Where the agent pod mounts the node's Tetragon socket, following ``spec.tetragon.address``.

The agent reads Tetragon's gRPC API on the node's Unix socket; the pod sees
only what it mounts, at the same path as the host (controller/render_agent.py):

- ``unix:///var/run/tetragon/...`` or ``unix:///run/tetragon/...`` (Tetragon's
  Helm default since v1.7.0) and any ``HOST:PORT``: the node's
  ``/var/run/tetragon``, as it always was (an operator upgrade rolls no agent);
- another ``unix:///path``: that socket's directory, read-only, type
  ``DirectoryOrCreate`` (a node without Tetragon still starts its agent, which
  falls back to its own probes), with the rules of ``spec.containerRuntime``'s
  socket (contracts/runtime_socket.py: no system tree, none of the agent's own
  directories, at most 107 bytes), and two more, refused as ``InvalidSocketPath``:
  a socket in a directory shared by the node (``/run``, ``/var/run``, ``/tmp``,
  any directory in ``/`` or ``/var``, ``/var/lib/kubelet``) is refused rather
  than mounted alone: Tetragon makes its socket again when it restarts, and a
  mount of the socket alone would keep the old one (the agent would report
  Tetragon unreachable until it restarts), and, where Tetragon is absent, the
  kubelet would not start the agent at all; and a directory that is, holds or
  sits in the container runtime socket's mount (the API server refuses two
  mounts at one path; one inside the other would hide or duplicate it). A
  ``%``, ``?`` or ``#`` in the path is refused too: the agent's gRPC client
  reads the address as a URI (``%41`` is ``A``, ``?`` starts a query), so it
  would dial another socket than the one mounted and the one Tetragon, which
  takes the path as written, listens on.

Whatever the directory, the usual one too, a ``unix://`` path holds no control
character, no ``%``, ``?`` or ``#``, no ``..`` segment, and at most 107 bytes
(a Unix socket address): the agent could not dial such a socket, or would dial
another one. In the usual directory other spellings stay accepted as before
(``//``, ``.``, a trailing ``/``).

The CRD says the same with CEL rules on ``spec.tetragon.address``
(``manifests/crds/runtimeobservers.yaml``; ``USUAL_ADDRESS_PATTERN`` is the
usual directory as those rules spell it), so ``kubectl apply`` refuses what
the operator would refuse; only the nesting with a ``spec.containerRuntime``
socket that is set is left to the operator (CEL has no dirname).
"""

from __future__ import annotations

import posixpath
import re

from stellaops_runtime.contracts.runtime_socket import (
    runtime_host_paths,
    shared_directory,
    shown,
    socket_path_problem,
    socket_size_problem,
)

TETRAGON_SOCKET_DIR = "/var/run/tetragon"  # Tetragon's own hostPath (its Helm chart mounts the same)
UNIX = "unix://"
_URI_SPECIAL = "%?#"  # what gRPC's URI parser does not take literally in a unix:// target's path
_USUAL_DIRS = (TETRAGON_SOCKET_DIR, "/run/tetragon")  # /var/run is /run on the node and in the image
# _usual as a regular expression over the whole address, for the CRD's CEL rules: a path without a
# ".." segment, not starting with "//", whose "." segments and repeated "/" normpath drops.
USUAL_ADDRESS_PATTERN = r"^unix:///([.]/([.]?/)*)?(var/([.]?/)*)?run/([.]?/)*tetragon(/.*)?$"
# What no unix:// path may hold, in the usual directory or not.
_UNDIALABLE_RE = re.compile(r"[\x00-\x1f\x7f%?#]|/\.\.(/|$)")


def unix_socket(address: str) -> str | None:
    """The socket path of a ``unix:///path`` address; None for ``HOST:PORT``."""
    return address[len(UNIX) :] if address.startswith(UNIX) else None


def _usual(path: str) -> bool:
    """In Tetragon's usual directory, spelled any way the agent resolves to it (``//``, ``.``)."""
    if path.startswith("//"):
        return False
    norm = posixpath.normpath(path)
    return any(norm == d or norm.startswith(d + "/") for d in _USUAL_DIRS)


def tetragon_host_dir(address: str) -> str:
    """The node directory the agent pod mounts (at the same path) to reach Tetragon at ``address``."""
    path = unix_socket(address)
    if path is None or _usual(path):
        return TETRAGON_SOCKET_DIR
    return posixpath.dirname(path)


def _alias(path: str) -> str:
    return path.removeprefix("/var") if path == "/var/run" or path.startswith("/var/run/") else path


def _nests(a: str, b: str) -> bool:
    a, b = _alias(a), _alias(b)
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def tetragon_socket_problem(address: str, runtime_socket: str | None) -> str | None:
    """Why the agent pod cannot mount the socket of ``address`` (None: it can, or nothing to mount).

    ``runtime_socket`` is ``spec.containerRuntime``'s socket (None: unset, the default mounts)."""
    path = unix_socket(address)
    if path is None:
        return None
    if any(c in path for c in _URI_SPECIAL):
        return (
            "a '%', '?' or '#' is read by the agent's gRPC client as a URI escape, query or fragment, "
            "so it would dial another socket than Tetragon's: give a path without them"
        )
    if _UNDIALABLE_RE.search(path):
        return "expected a normalized path on the node: no '..' segment and no control character"
    if size_problem := socket_size_problem(path):
        return size_problem
    if _usual(path):
        return None
    if problem := socket_path_problem(path):
        return problem
    directory = posixpath.dirname(path)
    if shared_directory(directory):
        return (
            f"its directory {shown(directory)} is shared by the node and is not mounted whole; "
            "Tetragon makes its socket again when it restarts, so the socket alone is not mounted either: "
            "give Tetragon's socket a directory of its own (e.g. /var/run/tetragon/tetragon.sock)"
        )
    for mounted, _ in runtime_host_paths(runtime_socket):
        if _nests(directory, mounted):
            return (
                f"its directory {shown(directory)} is, holds or sits in the container runtime's mount "
                f"{shown(mounted)} (spec.containerRuntime): give Tetragon's socket a directory of its own"
            )
    return None
