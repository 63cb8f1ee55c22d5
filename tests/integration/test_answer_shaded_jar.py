"""Log4Shell in an uber JAR: a question about a shaded dependency is never "not observed".

An application's fat JAR holds log4j-core's classes (``org/apache/logging/log4j/core/...``),
with or without log4j-core's own ``pom.properties``. Attribution files the JAR as one artifact
(docs/attribution.md, Limitations): the application's, or, for a Maven JAR without its own
descriptor, log4j-core's. No row of the store can carry a Java method's call under the JAR:
the JVM runs the classes as JIT code under no file and its own frames are ``libjvm.so``'s
(evidence/interpreted.py). So every answer about log4j-core must be unknown, never "not
observed" nor ``not_affected``, whichever PURL the JAR got: the ``interpreted`` doubt (a maven
package asked by name) and, when no row is log4j-core's, ``package_not_seen`` carry it. Real
JARs built here and attributed by the real attributor; the CLI's own entry point; SQLite.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import cli, row
from tests.integration.test_vex import IMG, by_vuln, vex_cli, watched

L4J = "pkg:maven/org.apache.logging.log4j/log4j-core"
FN = "org.apache.logging.log4j.core.lookup.JndiLookup.lookup"
JVM = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"
JDK = "pkg:deb/debian/openjdk-17-jre-headless@17.0.9%2B9-1~deb12u1?arch=amd64"
APP_POM = (
    "META-INF/maven/com.example/app/pom.properties",
    "groupId=com.example\nartifactId=app\nversion=1.0\n",
)
L4J_POM = (
    "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
    "groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n",
)
MANIFEST = (
    "Manifest-Version: 1.0\r\nCreated-By: Maven JAR Plugin 3.3.0\r\nMain-Class: com.example.App\r\n\r\n"
)
CLASS = b"\xca\xfe\xba\xbe\x00\x00\x00\x34"


def uber_jar(root: Path, name: str, poms: list[tuple[str, str]]) -> str:
    """An application's classes plus log4j-core's (JndiLookup among them), and these poms."""
    (root / "app").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(root / "app" / name, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", MANIFEST)
        z.writestr("com/example/App.class", CLASS)
        for cls in ("lookup/JndiLookup", "net/JndiManager", "Logger"):
            z.writestr(f"org/apache/logging/log4j/core/{cls}.class", CLASS)
        for member, text in poms:
            z.writestr(member, text)
    return f"/app/{name}"


JARS = {
    # maven-shade's default: every bundled artifact's descriptor kept
    "shaded_with_descriptors": ("app-1.0.jar", [APP_POM, L4J_POM], "pkg:maven/com.example/app@1.0"),
    # descriptors of the dependencies filtered out: nothing in the JAR names log4j-core
    "shaded_without_descriptors": ("app-1.0.jar", [APP_POM], "pkg:maven/com.example/app@1.0"),
    # Maven, addMavenDescriptor=false: only log4j-core's descriptor, so the JAR is filed under it
    "only_the_dependency_s_descriptor": ("app.jar", [L4J_POM], f"{L4J}@2.14.1"),
}


@pytest.mark.parametrize("case", list(JARS))
def test_a_question_about_a_shaded_log4j_core_is_never_not_observed(
    case: str, tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    name, poms, purl = JARS[case]
    path = uber_jar(tmp_path / "root", name, poms)
    got = Attributor().attribute_file(image_digest=IMG, root=str(tmp_path / "root"), path=path)
    assert got.purl == purl  # the JAR is one artifact (docs/attribution.md, Limitations)

    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:  # 40 days watched at EbpfDeep; the JVM ran, the JAR was seen
        s.write(
            [
                row("", EvidenceKind.LOADED, JDK, module=JVM, day=0, n=1),
                row("JVM_InvokeMethod", EvidenceKind.INVOKED, JDK, module=JVM, n=5000),
                row("", EvidenceKind.LOADED, purl, module=path, day=0, n=1),
            ],
            watched(),
        )
    code, doc = cli(url, "query", "observed", "--image", IMG, "--purl", L4J, "--function", FN)
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert "may be interpreted code" in doc["reason"]
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", L4J)
    assert (code, doc["answer"]) == (3, "unknown"), doc
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", FN)  # of no package
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert path in doc["reason"] or JVM in doc["reason"]
    code, doc = cli(url, "evidence", "--image", IMG, "--purl", L4J, "--function", FN)
    # exit 3: deferred (no row of log4j-core) or the neutral RTS with the doubt, never 0.20
    assert (code, doc["rts"]["score"], doc["data"]["invocation_count"]) == (3, 0.5, 0), doc
    assert doc["reachability_state"] in (None, "PotentiallyReachable"), doc
    assert doc["reachability_state"] is None or "may be interpreted code" in doc["reason"], doc

    vulns = {"vulnerabilities": [{"id": "CVE-2021-44228", "affected": [{"purl": L4J, "functions": [FN]}]}]}
    r = vex_cli(tmp_path, url, vulns)
    assert r.returncode == 0, r.stderr
    assert by_vuln(json.loads(r.stdout))["CVE-2021-44228"]["status"] == "under_investigation"
