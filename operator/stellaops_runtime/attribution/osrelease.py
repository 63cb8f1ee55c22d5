"""``os-release`` (freedesktop.org format) -> the distro namespace and qualifier PURLs carry.

``ID`` names the distribution (``debian``, ``ubuntu``, ``alpine``, ``fedora``,
``rhel``, ``wolfi``): it is the PURL namespace of its packages.
``distro=<ID>-<VERSION_ID>`` (``debian-12``, ``alpine-3.19.1``) is the
qualifier; a rolling release without ``VERSION_ID`` falls back to
``VERSION_CODENAME`` (``debian-trixie``) and otherwise has no qualifier.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# Where os-release lives inside a root, in the order systemd documents.
LOCATIONS = ("/etc/os-release", "/usr/lib/os-release")


@dataclass(frozen=True, slots=True)
class OsRelease:
    id: str | None
    version_id: str | None
    version_codename: str | None = None

    @property
    def distro(self) -> str | None:
        """``<ID>-<VERSION_ID>`` (or ``-<VERSION_CODENAME>``), ``None`` when either part is unknown."""
        version = self.version_id or self.version_codename
        return f"{self.id}-{version}" if self.id and version else None


UNKNOWN = OsRelease(None, None)


def parse_os_release(text: str) -> OsRelease:
    """Parse ``KEY=value`` lines with shell quoting; unknown keys, comments and junk lines are ignored."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:  # unbalanced quote: keep the raw text
            words = [value.strip("\"'")]
        fields[key.strip()] = words[0] if words else ""
    return OsRelease(
        id=_valid(fields.get("ID", "").lower()),
        version_id=_valid(fields.get("VERSION_ID", "")),
        version_codename=_valid(fields.get("VERSION_CODENAME", "")),
    )


# os-release(5): ID, VERSION_ID and VERSION_CODENAME are "a-z, 0-9, '.', '_' and '-'" (VERSION_ID
# also upper case and '~'). Anything else (a '/', a space, a control character written by whoever
# controls the image) is ignored rather than put into every PURL's namespace and qualifier.
_VALUE = re.compile(r"[A-Za-z0-9._~-]{1,64}")


def _valid(value: str) -> str | None:
    return value if _VALUE.fullmatch(value) else None
