"""Which of our Tetragon objects probe each node file: whose reload ends that file's replaced-file gap.

A node file replaced under Tetragon stays unwatched until Tetragon loads anew every policy whose
uprobe is on it (agent/node_file_gaps.py, agent/policy_reloads.py). The probe ConfigMap the agent
reads (controller/render_policy.py) says it: each policy's entry names its ``binaryPath`` functions
and the Tetragon objects rendered from it (``tetragonPolicies``); of those, the uprobes object
(``stellaops-<name>-uprobes``, controller/render_policy.py ``tetragon_policy_names``) is the one
whose uprobes are on the file, in the entry's namespace (empty for a cluster-wide policy, whose
objects are cluster-scoped). An entry whose uprobes object cannot be told (no ``tetragonPolicies``,
or a name long enough to be hashed) names all its objects: each must be seen loaded anew. A file
with an entry that names no object at all maps to None: every object of ours must be.

The files are named as the agent reaches them (native/host_file.py ``host_file``), as
agent/tetragon_facts.py ``host_files`` names them.
"""

from __future__ import annotations

from typing import Any

Key = tuple[str, str]  # (namespace, name) of a Tetragon object
Probing = dict[str, frozenset[Key] | None]  # node file -> the objects probing it (None: not told)
PREFIX = "stellaops"  # controller/naming.py dns_subdomain's first part for our objects (a test checks)
MAX_NAME = 253  # names longer than this are hashed (controller/naming.py dns_subdomain)


def uprobe_objects(entry: dict[str, Any]) -> frozenset[Key] | None:
    """The objects of one probe entry whose uprobes are on its ``binaryPath`` files (None: not told)."""
    names = entry.get("tetragonPolicies")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        return None
    namespace = entry.get("namespace") if isinstance(entry.get("namespace"), str) else ""
    uprobes = f"{PREFIX}-{entry.get('name')}-uprobes"
    chosen = [uprobes] if len(uprobes) <= MAX_NAME and uprobes in names else names
    return frozenset((str(namespace), n) for n in chosen)


def probing_policies(policies: dict[str, dict[str, Any]], host_root: str) -> Probing:
    """The objects probing each node file the entries ``policies`` (a parsed probe ConfigMap) name."""
    from stellaops_runtime.native.config import NativeConfigError
    from stellaops_runtime.native.host_file import host_file

    out: Probing = {}
    for entry in policies.values():
        functions = entry.get("functions")
        if not isinstance(functions, list):
            continue
        objects = uprobe_objects(entry)
        for fn in functions:
            path = fn.get("binaryPath") if isinstance(fn, dict) else None
            if not isinstance(path, str) or not path.startswith("/"):
                continue
            try:
                binary = host_file(host_root, path)
            except NativeConfigError:
                continue  # not probed by the agent's reads either (policy_config's not_covered)
            if binary in out and out[binary] is None:
                continue
            was = out.get(binary, frozenset())
            out[binary] = None if objects is None or was is None else was | objects
    return out


def read_probing(path: str, host_root: str) -> Probing:
    """:func:`probing_policies` of the probe ConfigMap file at ``path``; empty when it cannot be read
    (the facts' own read says why, and a file with no entry needs every object of ours)."""
    from stellaops_runtime.native.config import NativeConfigError
    from stellaops_runtime.native.policy_config import MAX_FILE_BYTES, parse_payload
    from stellaops_runtime.regular_file import read_regular

    try:
        return probing_policies(parse_payload(read_regular(path, MAX_FILE_BYTES), source=path), host_root)
    except (OSError, NativeConfigError):
        return {}
