"""Maven coordinates of a JAR: ``META-INF/maven/<groupId>/<artifactId>/pom.properties``.

``pom.properties`` is a Java properties file with ``groupId``,
``artifactId`` and ``version``. A plain JAR has one; a shaded ("fat") JAR
carries one per bundled artifact, and then the JAR's own is the one whose
``<artifactId>-<version>.jar`` is the file's name; if none matches the JAR is
left unattributed rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

POM_PROPERTIES = re.compile(r"^META-INF/maven/([^/]+)/([^/]+)/pom\.properties$")


@dataclass(frozen=True, slots=True)
class MavenArtifact:
    group_id: str
    artifact_id: str
    version: str


def parse_properties(text: str) -> dict[str, str]:
    """``key=value`` / ``key: value`` lines; ``#``/``!`` comments and blank lines skipped."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def artifact_of(text: str, *, member: str) -> MavenArtifact:
    """The artifact a ``pom.properties`` describes; ``ValueError`` when a coordinate is missing."""
    props = parse_properties(text)
    missing = [k for k in ("groupId", "artifactId", "version") if not props.get(k)]
    if missing:
        raise ValueError(f"{member}: no {', '.join(missing)}")
    return MavenArtifact(props["groupId"], props["artifactId"], props["version"])


def own_artifact(artifacts: list[MavenArtifact], *, file_name: str) -> MavenArtifact | None:
    """The JAR's own artifact: the only one, or the one matching ``<artifactId>-<version>.jar``."""
    if len(artifacts) == 1:
        return artifacts[0]
    for a in artifacts:
        if file_name.startswith(f"{a.artifact_id}-{a.version}."):
            return a
    return None
