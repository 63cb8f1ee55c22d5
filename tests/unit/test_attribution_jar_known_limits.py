"""What a JAR that shades a dependency answers: one PURL per file, whatever class ran (a known limit).

docs/attribution.md "Limitations" promises these answers, wrong as two of them
are, so that a change to them is seen: a JAR is attributed as a file, never
per class, and a class's package does not say which artifact it came from
(``com.google.guava`` ships ``com.google.common``, ``log4j:log4j`` ships
``org.apache.log4j``, and a relocated shaded copy is under the JAR's own
packages), so the classes of a shaded dependency are the JAR's artifact's.
A JAR Maven made (``Created-By``) with ``addMavenDescriptor=false`` that
shades exactly one dependency carries only that dependency's
``pom.properties`` and is filed under it, application classes included.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from stellaops_runtime.attribution.attributor import Attributor

MAVEN_MANIFEST = (
    "Manifest-Version: 1.0\r\nCreated-By: Maven JAR Plugin 3.3.0\r\nBuild-Jdk-Spec: 17\r\n"
    "Main-Class: com.example.App\r\n\r\n"
)
LANG3 = "META-INF/maven/org.apache.commons/commons-lang3/pom.properties"
HELLO = "META-INF/maven/com.example/hello/pom.properties"


def _jar(root: Path, name: str, poms: dict[str, str]) -> str:
    (root / "app").mkdir(exist_ok=True)
    with zipfile.ZipFile(root / "app" / name, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", MAVEN_MANIFEST)
        z.writestr("com/example/App.class", b"\xca\xfe\xba\xbe")
        z.writestr("org/apache/commons/lang3/StringUtils.class", b"\xca\xfe\xba\xbe")
        for member, text in poms.items():
            z.writestr(member, text)
    return f"/app/{name}"


def _answers(root: Path, path: str) -> set[tuple[str | None, str]]:
    att = Attributor()
    out = {
        (a.purl, a.scope) for a in [att.attribute_file(image_digest="sha256:j", root=str(root), path=path)]
    }
    for function in ("org.apache.commons.lang3.StringUtils.join", "com.example.App.main"):
        a = att.attribute_function(image_digest="sha256:j", root=str(root), path=path, function=function)
        out.add((a.purl, a.scope))
    return out


def test_a_shaded_dependency_s_classes_are_the_jar_s_own_artifact(tmp_path: Path) -> None:
    """hello-1.4.2.jar with commons-lang3's classes but not its pom: all of it is hello's."""
    path = _jar(
        tmp_path, "hello-1.4.2.jar", {HELLO: "groupId=com.example\nartifactId=hello\nversion=1.4.2\n"}
    )
    assert _answers(tmp_path, path) == {("pkg:maven/com.example/hello@1.4.2", "file")}


def test_a_maven_jar_without_its_descriptor_shading_one_dependency_is_that_dependency(tmp_path: Path) -> None:
    """app.jar, Created-By Maven, only commons-lang3's pom: all of it is commons-lang3's (wrong for App)."""
    lang3 = "groupId=org.apache.commons\nartifactId=commons-lang3\nversion=3.12.0\n"
    path = _jar(tmp_path, "app.jar", {LANG3: lang3})
    assert _answers(tmp_path, path) == {("pkg:maven/org.apache.commons/commons-lang3@3.12.0", "file")}
