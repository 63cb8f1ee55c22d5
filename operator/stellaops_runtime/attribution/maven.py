"""Maven coordinates of a JAR: ``META-INF/maven/<groupId>/<artifactId>/pom.properties``.

``pom.properties`` is a Java properties file with ``groupId``,
``artifactId`` and ``version``. A plain JAR has one; a shaded ("fat") JAR
carries one per bundled artifact, and then the JAR's own is the one whose
``<artifactId>-<version>.jar`` is the file's name; if none matches the JAR is
left unattributed rather than guessed.

A JAR with ONE ``pom.properties`` is not always that artifact: Gradle's shadow
plugin writes none of its own, so an application's fat JAR with one dependency
carries only the dependency's. Such a JAR not named ``<artifactId>-<version>.jar``
is the artifact's only when its manifest's main section vouches for it: Maven
made it (``Created-By`` names Maven, whose archiver always adds the project's
own ``pom.properties``) or ``Implementation-Title``/``Implementation-Version``
name the artifact; and nothing in the manifest names another version, nor (unless
Maven made it: Maven titles a JAR by the project's ``<name>``) another title.
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


def parse_manifest(text: str) -> dict[str, str]:
    """The main section of a ``META-INF/MANIFEST.MF``: names lower-cased (the JAR spec compares
    them without case), continuation lines (a leading space) joined; ends at the first blank line."""
    out: dict[str, str] = {}
    last: str | None = None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            break
        if line[0] == " ":
            if last is not None:
                out[last] += line[1:]
            continue
        name, sep, value = line.partition(":")
        if not sep:
            last = None
            continue
        last = name.strip().lower()
        out[last] = value[1:] if value.startswith(" ") else value
    return {k: v.strip() for k, v in out.items()}


def own_artifact(
    artifacts: list[MavenArtifact], *, file_name: str, manifest: dict[str, str] | None = None
) -> MavenArtifact | None:
    """The JAR's own artifact: the one matching ``<artifactId>-<version>.jar``, or the only
    one when the manifest vouches for it (module docstring); otherwise ``None``."""
    stem = file_name.rpartition(".")[0]  # exactly: foo-1.0.1.jar and foo-1.0.1-all.jar start with foo-1.0.
    named = [a for a in artifacts if stem == f"{a.artifact_id}-{a.version}"]
    if len(named) == 1:
        return named[0]
    if len(artifacts) != 1 or manifest is None:
        return None
    only = artifacts[0]
    title = manifest.get("implementation-title")
    version = manifest.get("implementation-version")
    by_maven = "maven" in manifest.get("created-by", "").lower()
    # Maven's archiver titles the JAR by the project's <name> (not its artifactId): with Maven
    # only the version can name another artifact.
    if version is not None and version != only.version:
        return None  # the manifest names another artifact: the application around a bundled one
    if title is not None and title != only.artifact_id and not by_maven:
        return None
    if title == only.artifact_id and version == only.version:
        return only
    return only if by_maven else None
