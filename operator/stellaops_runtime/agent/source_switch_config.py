"""What the source switch gives its BCC probes: the probe ConfigMap read, and the PURL results marked.

Split from agent/source_switch.py. ``read_probe_config`` merges the
operator's probe ConfigMap into the agent's ``native`` settings (a file that
cannot be used is logged and counted, and the probes run with the agent's own
settings) and returns the functions named by PURL apart, with the file's
(mtime, size) so a change is noticed. ``mark_purl`` turns a load of the probes
into the per-function entries the ObservationNode carries.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stellaops_runtime.agent.source_switch_stats import SwitchStats
    from stellaops_runtime.contracts.config_node import NativeSourceConfig
    from stellaops_runtime.native.config import NativeConfig
    from stellaops_runtime.native.policy_config import PurlFunction
    from stellaops_runtime.native.purl_wiring import PurlWiring
    from stellaops_runtime.native.source import NativeStats

log = logging.getLogger(__name__)

Stamp = tuple[int, int] | None


def config_stamp(path: str) -> Stamp:
    """(mtime ns, size) of the probe ConfigMap file (None: not configured or absent)."""
    if not path:
        return None
    try:
        st = os.stat(path)  # a mounted ConfigMap is a symlink swapped on update: follow it
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def read_probe_config(
    native: NativeSourceConfig, stats: SwitchStats
) -> tuple[NativeConfig, list[PurlFunction], Stamp]:
    """The agent's ``native`` probe settings plus what the operator's probe ConfigMap asks for."""
    base: NativeConfig = native.probes
    path = native.probe_config_file
    stamp = config_stamp(path)
    if not path:
        return base, [], stamp
    if stamp is None:  # the ConfigMap is optional: no policy rendered yet
        log.info("native.probeConfigFile %s does not exist: the probes run with its own settings", path)
        return base, [], stamp
    from stellaops_runtime.native.config import NativeConfigError
    from stellaops_runtime.native.policy_config import load_probe_config, read_probe_config

    try:
        functions = read_probe_config(path, base).purl_functions
        return load_probe_config(path, base), functions, stamp
    except NativeConfigError as e:
        stats.probe_config_errors += 1
        log.error("native.probeConfigFile %s: %s; the probes run with the agent's own settings", path, e)
        return base, [], stamp


def mark_purl(
    wiring: PurlWiring | None, bcc: NativeStats, marked: tuple[int, int], stats: SwitchStats
) -> tuple[int, int]:
    """Mark the PURL targets after a new (failed) load, once; returns the load counts now marked."""
    now = (bcc.connects, bcc.connect_failures)
    if wiring is None or now == marked:
        return marked
    if bcc.connected:
        wiring.mark(bcc.attached, bcc.failed)
    else:
        why = f"probes not loaded: {bcc.last_error}"
        wiring.mark([], [(t.label(), why) for t in wiring.plan.targets()])
    stats.purl_functions, stats.purl_functions_omitted = wiring.entries()
    return now
