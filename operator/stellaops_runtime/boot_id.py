"""The kernel's id of the running boot, for files that must not outlive it.

An agent keeps state for the next agent of its node (the watch record's
boot-clock moment, the native probes' known files). Boot-clock times and
inode numbers mean nothing after a reboot, so such a file records the boot it
was written in, and a reader of another boot ignores those parts.
"""

from __future__ import annotations

from pathlib import Path

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def this_boot() -> str:
    """The kernel's id of this boot ("" when unreadable: nothing is then tied to a boot)."""
    try:
        return Path(BOOT_ID_PATH).read_text().strip()[:64]
    except OSError:
        return ""
