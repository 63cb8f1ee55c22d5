"""A policy's ``binaryPath`` as the agent reaches the node's file: through the host's root.

Split from :mod:`stellaops_runtime.native.policy_config` (which merges the
probe ConfigMap into the probes' configuration) to keep it small: the one part
that reads the node's filesystem, following symlinks inside the node's root.
"""

from __future__ import annotations

from stellaops_runtime.attribution.model import AttributionError, ErrorKind
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.native.config import NativeConfigError

_UNRESOLVABLE = frozenset(
    {ErrorKind.OUTSIDE_ROOT, ErrorKind.SYMLINK_ESCAPE, ErrorKind.SYMLINK_LOOP, ErrorKind.BAD_PATH}
)


def host_file(host_root: str, path: str) -> str:
    """The node's file at ``path`` as the agent reaches it: ``host_root`` + the path with its symlinks
    followed inside ``host_root``; raises NativeConfigError when they cannot be.

    The kernel follows an absolute symlink met under ``/proc/1/root`` from the
    agent's own root, not the node's: ``/usr/bin/java`` -> ``/etc/alternatives/java``
    was looked up in the agent's image (not found, or a file of the agent's image
    probed in the node's place, whose calls never come). A link climbing above
    ``/``, a loop or too many links cannot be resolved inside the root: handing
    the path to the kernel would leave it. A root or link that cannot be read
    leaves the path as given (the attach then reports what it finds).
    """
    if not host_root:
        return path
    try:
        fs = RootFS(host_root)
        return fs.host_path(fs.resolve(path))
    except AttributionError as e:
        if e.kind in _UNRESOLVABLE:
            raise NativeConfigError(f"cannot be resolved inside the node's root {host_root}: {e}") from None
    except (OSError, ValueError):
        pass
    return host_root + path  # the root or a link unreadable: as given; the attach says what it finds
