"""A distribution package that ships a JAR beside its JNI library: a Java method of it is never "not called".

Fedora packages JNI libraries with their JAR (jna: ``%{_jnidir}/jna.jar`` and
``%{_libdir}/jna/libjnidispatch.so``). The JAR never gets a row (it has no
build-id, and the JVM runs its classes as JIT code under no file), but the JNI
library is stored as loaded under the package's PURL, so the package was "seen
loaded" and nothing marked it as interpreted (its type is rpm, its ``.so`` lies
in no interpreter's module directory). A Java method asked of it
(``com.sun.jna.Native.load``) then answered "not observed" (exit 1), ``vex``
``not_affected``, though no sampled stack could have named it (s40/J noticed it).
Now a name shaped as a dotted method path (``a.b.C.m``, what a Java or Python
function is named by), asked of a package in an image that runs interpreted
code (a JVM here), raises the ``interpreted`` doubt: unknown, exit 3,
``under_investigation``. A C name (``ffi_call``) or a JNI symbol
(``Java_com_sun_jna_Native_invokeInt``) of the same package keeps its "not
observed", and so does the Java name in an image where no interpreter was seen.
Seen failing before the fix. Real CLI, SQLite.
"""

from __future__ import annotations

from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from tests.integration.test_answer_interpreted import BID, ask, filled, row
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import IMG

JNA = (
    "/usr/lib64/jna/libjnidispatch.so",
    "pkg:rpm/fedora/jna@5.13.0-4.fc39?arch=x86_64",
    "pkg:rpm/fedora/jna",
)
JVM = (
    "/usr/lib/jvm/java-17-openjdk-17.0.9.0.9-3.fc39.x86_64/lib/server/libjvm.so",
    "pkg:rpm/fedora/java-17-openjdk-headless@17.0.9.0.9-3.fc39?arch=x86_64",
)
METHOD = "com.sun.jna.Native.load"


def observed(url: str, purl: str, function: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    """(exit code, JSON document) of the real ``query observed`` of ``function`` asked of ``purl``."""
    return cli(url, "query", "observed", "--image", IMG, "--purl", purl, "--function", function)


def test_a_java_method_of_a_distro_package_with_a_jni_library_is_unknown(tmp_path: Path) -> None:
    url = filled(
        tmp_path,
        row(JNA[0], "", EvidenceKind.LOADED, JNA[1], bid=BID),
        row(JVM[0], "", EvidenceKind.LOADED, JVM[1], bid="cd" * 20),
    )
    for fn in (METHOD, f"{METHOD}(java.lang.String, java.lang.Class)"):
        status, note, e, edoc, q, qdoc = ask(tmp_path, url, JNA[2], fn)
        assert status == "under_investigation", (fn, note)
        assert "no sampled stack names" in note and JVM[0] in note, note
        assert e == 3 and edoc["rts"]["score"] == 0.5, edoc
        assert q == 3 and qdoc["answer"] == "unknown", qdoc
    for native in ("ffi_call", "Java_com_sun_jna_Native_invokeInt"):  # C code of the package: not Java's
        code, doc = observed(url, JNA[2], native)
        assert (code, doc["answer"]) == (1, "not_observed"), (native, doc)
    (tmp_path / "nojvm").mkdir()
    url = filled(tmp_path / "nojvm", row(JNA[0], "", EvidenceKind.LOADED, JNA[1], bid=BID))
    code, doc = observed(url, JNA[2], METHOD)
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # no interpreter ran in the image


def test_no_function_of_a_package_with_a_jni_library_ran_is_unknown_in_a_jvm_image(tmp_path: Path) -> None:
    """``query functions --purl`` of such a package (no function named) was "not observed" (exit 1) in
    a JVM image, though its JAR's methods may have run unseen (RAT2 s41, seen failing before the fix).
    A JNI library lies where the distributions put one: Fedora's ``%{_libdir}/%{name}/``, Debian's
    ``jni`` directory. A library of the plain library directory (zlib), one of a private directory of
    another name (cyrus-sasl's ``sasl2``), or the same package in an image with no JVM keep theirs."""
    deb = ("/usr/lib/x86_64-linux-gnu/jni/libjnidispatch.so", "pkg:deb/debian/libjna-jni@5.13.0-2?arch=amd64")
    zlib = ("/usr/lib64/libz.so.1.2.13", "pkg:rpm/fedora/zlib@1.2.13-5.fc39?arch=x86_64")
    sasl = ("/usr/lib64/sasl2/libplain.so.3.0.0", "pkg:rpm/fedora/cyrus-sasl-lib@2.1.28-11.fc39?arch=x86_64")
    native = [row(m, "", EvidenceKind.LOADED, p, bid=BID) for m, p in (JNA[:2], deb, zlib, sasl)]
    url = filled(tmp_path, *native, row(JVM[0], "", EvidenceKind.LOADED, JVM[1], bid="cd" * 20))
    for purl, lib in ((JNA[2], JNA[0]), ("pkg:deb/debian/libjna-jni", deb[0])):
        code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", purl)
        assert (code, doc["answer"]) == (3, "unknown"), (purl, doc)
        assert lib in doc["reason"] and JVM[0] in doc["reason"], doc["reason"]
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:rpm/fedora/jn", "--prefix")
    assert (code, doc["answer"]) == (3, "unknown") and JNA[0] in doc["reason"], doc  # jna only
    for purl in ("pkg:rpm/fedora/zlib", "pkg:rpm/fedora/cyrus-sasl-lib"):
        code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", purl)
        assert (code, doc["answer"]) == (1, "not_observed"), (purl, doc)
    (tmp_path / "nojvm").mkdir()
    python = ("/usr/bin/python3.12", "pkg:rpm/fedora/python3@3.12.1-2.fc39?arch=x86_64")
    url = filled(
        tmp_path / "nojvm", *native, row(*python[:1], "", EvidenceKind.LOADED, python[1], bid="ef" * 20)
    )
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", JNA[2])
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # JNI is the JVM's: no JVM ran in the image


def test_a_go_closure_of_a_go_module_keeps_not_observed_in_a_jvm_image(tmp_path: Path) -> None:
    """A Go module's package (pkg:golang) is Go code compiled into its binary, never a JAR's: its
    closure ``main.main.func2`` or value-receiver method, dotted like a Java method, was unknown in
    an image running a JVM (RAT2 s41, seen failing before the fix); a right "not observed" again.
    A distribution's package of a Go program (``pkg:rpm``) cannot be told from a JAR's: unknown."""
    go = ("/app/server", "pkg:golang/example.com/server@v1.0.0")
    rpm = ("/usr/bin/containerd", "pkg:rpm/fedora/containerd@1.7.13-1.fc39?arch=x86_64")
    url = filled(
        tmp_path,
        row(go[0], "main.main.func1", EvidenceKind.ON_STACK, go[1], bid=BID),
        row(rpm[0], "main.main.func1", EvidenceKind.ON_STACK, rpm[1], bid="ab" * 20),
        row(JVM[0], "", EvidenceKind.LOADED, JVM[1], bid="cd" * 20),
    )
    for fn in ("main.main.func2", "example.com/server/api.Handler.Serve", "time.Time.String"):
        code, doc = observed(url, "pkg:golang/example.com/server", fn)
        assert (code, doc["answer"]) == (1, "not_observed"), (fn, doc)
    code, doc = observed(url, "pkg:rpm/fedora/containerd", "main.main.func2")
    assert (code, doc["answer"]) == (3, "unknown"), doc


# How else a user or an advisory names a Java (or Python) method: Javadoc's ``#``, a method
# reference ``::``, a JVM descriptor, a Python entry point ``module:qualname``.
SPELLINGS = (
    "com.sun.jna.Native#load",
    "com.sun.jna.Native#load(java.lang.String, java.lang.Class)",
    "com.sun.jna.Native::load",
    "com.sun.jna.Native.load(Ljava/lang/String;Ljava/lang/Class;)Lcom/sun/jna/Library;",
    "com.sun.jna.Native.<locals>.load",
    "jna.entry:Native.load",
    # a profiler's Java frame (review RNO3, seen failing before the fix: not_observed): async-profiler's
    # internal name, perf-map-agent's class signature, javap's descriptor after ':'
    "com/sun/jna/Native.load",
    "Lcom/sun/jna/Native;::load",
    "com/sun/jna/Native.load:(Ljava/lang/String;Ljava/lang/Class;)Lcom/sun/jna/Library;",
)


def test_other_spellings_of_a_java_method_are_unknown_in_a_jvm_image(tmp_path: Path) -> None:
    """``com.x.Foo#bar``, ``com.x.Foo::bar``, a JVM descriptor or a Python entry point
    ``pkg.mod:Class.meth`` asked of the JAR+JNI package kept "not observed" (exit 1) in a JVM image
    where ``com.x.Foo.bar`` is unknown: only the dotted spelling was known (RAT2 s41; s42/NO3, seen
    failing before the fix). Every spelling gets the dotted one's answer, in a JVM image and in an
    image with no interpreter."""
    url = filled(
        tmp_path,
        row(JNA[0], "", EvidenceKind.LOADED, JNA[1], bid=BID),
        row(JVM[0], "", EvidenceKind.LOADED, JVM[1], bid="cd" * 20),
    )
    status, note, e, edoc, q, qdoc = ask(tmp_path, url, JNA[2], SPELLINGS[0])
    assert (status, e, q, qdoc["answer"]) == ("under_investigation", 3, 3, "unknown"), note
    assert edoc["rts"]["score"] == 0.5 and JVM[0] in note, edoc
    for fn in SPELLINGS[1:]:
        code, doc = observed(url, JNA[2], fn)
        assert (code, doc["answer"]) == (3, "unknown"), (fn, doc)
    (tmp_path / "nojvm").mkdir()
    url = filled(tmp_path / "nojvm", row(JNA[0], "", EvidenceKind.LOADED, JNA[1], bid=BID))
    for fn in SPELLINGS:
        code, doc = observed(url, JNA[2], fn)
        assert (code, doc["answer"]) == (1, "not_observed"), (fn, doc)  # no interpreter ran in the image
