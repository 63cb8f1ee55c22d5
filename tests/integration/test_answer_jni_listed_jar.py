"""A JNI library outside a ``jni`` directory whose JAR is in the same package: never "no function ran".

Fedora's ``java-atk-wrapper`` ships ``/usr/lib64/libatk-wrapper.so.0`` in the plain library
directory and its JAR under ``/usr/lib/java``. Only the library is ever stored (seen loaded): the
JVM runs the JAR's classes as JIT code under no file. The path rule of evidence/interpreted.py
(``jni_library``: a ``jni`` directory, ``%{_libdir}/%{name}/``) cannot tell this library from
zlib's, so ``query functions --purl`` of the package answered "not observed" (exit 1) in an
image running a JVM, though its Java methods may have run unseen (NO3 s42 item 2, AT2/RAT2 s41).

Now attribution remembers the ``.jar`` a package's database lists (attribution/owners.py) and the
agent stores it once as a 0-call ``listed`` row of the package (agent/listed_jars.py); the answer
reads it as the JNI library's place: unknown (exit 3) when the image runs a JVM. A listed JAR is
no observation: in an image with no JVM, and for a C function of the package, the answer is
unchanged, and it never makes the image look like it runs a JVM. Seen failing before the fix.

Real rpm packages built by ``rpmbuild`` and installed by ``rpm --root``, a procfs of symlinks, the
agent's own HotSymbolAttribution, the real writer and CLI, SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stellaops_runtime.agent.purls import HotSymbolAttribution
from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.contracts.config import AttributionConfig
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests import attribution_roots as roots
from tests.integration.test_answer_interpreted import filled, row
from tests.integration.test_answer_jni_package import JVM, observed
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import IMG, ZLIB

SPEC = """\
Name: {name}
Version: 1.0
Release: 1
Summary: JNI listing test
License: MIT
BuildArch: noarch
%global __os_install_post %{{nil}}

%description
JNI listing test

%install
mkdir -p %{{buildroot}}/usr/lib64 %{{buildroot}}/usr/lib/java
{install}

%files
{files}
"""
WRAP = ("stella-jniwrap", "/usr/lib64/libstella-wrap.so.0", "/usr/lib/java/stella-wrap.jar")
PLAIN = ("stella-plain", "/usr/lib64/libstella-plain.so.1")


@pytest.fixture(scope="module")
def rpm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An rpm root holding WRAP (a library in the plain library directory and a JAR) and PLAIN (a
    library only)."""
    rpmbuild, rpm = roots.tool("rpmbuild"), roots.tool("rpm")
    tmp = tmp_path_factory.mktemp("rpmjni")
    built = []
    for name, *files in (WRAP, PLAIN):
        install = "\n".join(f"echo {name} > %{{buildroot}}{f}" for f in files)
        spec = tmp / f"{name}.spec"
        spec.write_text(SPEC.format(name=name, install=install, files="\n".join(files)))
        roots.run([rpmbuild, "--define", f"_topdir {tmp / 'top'}", "-bb", str(spec)])
        built.append(str(next((tmp / "top" / "RPMS").rglob(f"{name}-1.0-*.rpm"))))
    root = tmp / "root"
    root.mkdir()
    roots.run([rpm, "--root", str(root), "--dbpath", "/var/lib/rpm", "--nodeps", "-i", *built])
    return root


def stored_rows(root: Path, tmp: Path, probed: dict[tuple[str, str], str] | None = None) -> list:  # type: ignore[type-arg]
    """The two libraries' rows, seen loaded in the image and attributed as the agent does (through
    a container's root; ``probed``: the files the PURL probes resolved), with what the attribution
    adds to them."""
    proc = tmp / "proc"
    (proc / "100").mkdir(parents=True)
    os.symlink(root, proc / "100" / "root")
    att = HotSymbolAttribution(AttributionConfig(), proc_root=str(proc), node_name="node-1")
    att.probed = probed or {}
    container = ContainerInfo(id="c100", image_digest=IMG)
    att.note(RuntimeCallEvent(kind=EventKind.EXEC, timestamp_ns=1, node_name="node-1",
                              process=ProcessInfo(pid=100), container=container))  # fmt: skip
    deltas = [row(WRAP[1], "", EvidenceKind.LOADED, ""), row(PLAIN[1], "", EvidenceKind.LOADED, "")]
    att.fill(deltas)
    assert [d.purl for d in deltas[:2]] == [
        "pkg:rpm/stella-jniwrap@1.0-1?arch=noarch",
        "pkg:rpm/stella-plain@1.0-1?arch=noarch",
    ]
    return deltas


def test_a_package_listing_a_jar_beside_its_library_is_unknown_in_a_jvm_image(
    rpm_root: Path, tmp_path: Path, url: str
) -> None:
    deltas = stored_rows(rpm_root, tmp_path)
    store = filled(url, *deltas, row(JVM[0], "", EvidenceKind.LOADED, JVM[1], bid="cd" * 20))
    code, doc = cli(store, "query", "functions", "--image", IMG, "--purl", "pkg:rpm/stella-jniwrap")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert WRAP[2] in doc["reason"] and JVM[0] in doc["reason"], doc["reason"]
    code, doc = cli(store, "query", "functions", "--image", IMG, "--purl", "pkg:rpm/stella-jni", "--prefix")
    assert (code, doc["answer"]) == (3, "unknown") and WRAP[2] in doc["reason"], doc
    code, doc = cli(store, "query", "functions", "--image", IMG, "--purl", "pkg:rpm/stella-plain")
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # no JAR listed: zlib's case
    code, doc = observed(store, "pkg:rpm/stella-jniwrap", "wrap_init")
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # a C function of the library keeps its answer
    code, doc = cli(store, "query", "images")
    (line,) = [i for i in doc["images"] if i["image"] == IMG]
    # the JAR is no function, nor a row observed (as an ``unprobed`` fact is not: agent/unprobed.py)
    assert (code, line["state"], line["hot_symbol_rows"], line["function_rows"]) == (0, "observed", 3, 0), (
        line
    )


def test_a_listed_jar_is_no_jvm(rpm_root: Path, tmp_path: Path) -> None:
    """In an image where no JVM was seen, the listed JAR changes nothing: not a sign that a JVM runs
    (a question of no package keeps its answer), nor a JAR seen loaded."""
    store = filled(tmp_path, *stored_rows(rpm_root, tmp_path))
    code, doc = cli(store, "query", "functions", "--image", IMG, "--purl", "pkg:rpm/stella-jniwrap")
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    code, doc = cli(store, "query", "observed", "--image", IMG, "--function", "com.x.Wrap.init")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_a_library_the_purl_probes_resolved_still_tells_its_jar(rpm_root: Path, tmp_path: Path) -> None:
    """A package probed by PURL (its library's purl given by the probes' resolution, no attribution
    asked for it) noted no JAR: its Java methods, which no probe watches, were "not observed" as a
    whole in a JVM image (review RRNO3). The JAR is now read for it as for any file; the row keeps
    the probes' purl."""
    purl = "pkg:rpm/stella-jniwrap@1.0-1?arch=noarch"
    deltas = stored_rows(rpm_root, tmp_path, probed={(IMG, WRAP[1]): purl})
    listed = [(d.key.module, d.purl) for d in deltas if d.key.evidence == EvidenceKind.LISTED]
    assert listed == [(WRAP[2], purl)], listed


def test_a_real_deb_listing_a_jar_names_it_and_the_rpm_one_too(rpm_root: Path, tmp_path: Path) -> None:
    """Debian's gettext (this machine's status stanza and file list, its real library) ships
    ``libgettextlib-0.21.so`` in the plain library directory and ``/usr/share/java/gettext.jar``:
    the attribution names the JAR; zlib1g lists none. rpm's database too."""
    lib = "/usr/lib/x86_64-linux-gnu/libgettextlib-0.21.so"
    if not Path(lib).is_file() or not Path("/var/lib/dpkg/info/gettext.list").is_file():
        pytest.skip("gettext is not installed here")
    root = tmp_path / "deb"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    shutil.copy2(lib, root / lib.lstrip("/"))
    shutil.copy2(ZLIB, root / ZLIB.lstrip("/"))
    (root / "lib").symlink_to("usr/lib")  # merged /usr: dpkg lists zlib under /lib
    (root / "etc").mkdir()
    shutil.copy2("/etc/os-release", root / "etc/os-release")
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    shutil.copy2("/var/lib/dpkg/info/gettext.list", info)
    shutil.copy2("/var/lib/dpkg/info/zlib1g:amd64.list", info)
    stanzas = Path("/var/lib/dpkg/status").read_text().split("\n\n")
    wanted = ("Package: gettext\n", "Package: zlib1g\n")
    (root / "var/lib/dpkg/status").write_text("\n\n".join(s for s in stanzas if s.startswith(wanted)) + "\n")
    att = Attributor()
    got = att.attribute_file(image_digest="sha256:" + "a1" * 32, root=str(root), path=lib)
    assert (got.purl or "").startswith("pkg:deb/debian/gettext@") and got.jar == "/usr/share/java/gettext.jar"
    got = att.attribute_file(image_digest="sha256:" + "a1" * 32, root=str(root), path=ZLIB)
    assert (got.purl or "").startswith("pkg:deb/debian/zlib1g@") and got.jar is None
    got = att.attribute_file(image_digest="sha256:" + "a2" * 32, root=str(rpm_root), path=WRAP[1])
    assert got.jar == WRAP[2]


def test_a_listed_jar_the_store_refused_still_forbids_a_no(url: str) -> None:
    """A ``listed`` row the database refuses (its JAR path not UTF-8 as the agent decodes it, as an
    image's maker may write it; quarantined_rows) is the only record that the package holds Java
    code: the ``refused`` doubt skipped it for its 0 calls (an ``unprobed`` fact counted since
    6bf2b9d), so ``query functions --purl`` of the package said not_observed (exit 1) in an image
    running a JVM. Seen failing before the fix."""
    purl = "pkg:rpm/stella-jniwrap@1.0-1?arch=noarch"
    jar = row("/usr/lib/java/stella-wrap\udcff.jar", "", EvidenceKind.LISTED, purl)
    jar.invocation_count = 0  # a fact: no call (agent/listed_jars.py)
    plain = row(PLAIN[1], "", EvidenceKind.LOADED, "pkg:rpm/stella-plain@1.0-1?arch=noarch")
    store = filled(url, plain, row(JVM[0], "", EvidenceKind.LOADED, JVM[1], bid="cd" * 20))
    with open_store(store) as s:
        done = s.write_batch(Batch("node-1/agent", 1, [row(WRAP[1], "", EvidenceKind.LOADED, purl), jar]))
        assert done.quarantined == 1, done
    code, doc = cli(store, "query", "functions", "--image", IMG, "--purl", "pkg:rpm/stella-jniwrap")
    assert (code, doc["answer"]) == (3, "unknown") and "stella-wrap" in str(doc["refused"]), doc
    code, doc = cli(store, "query", "functions", "--image", IMG, "--purl", "pkg:rpm/stella-plain")
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # another package: not its JAR
    code, doc = observed(store, "pkg:rpm/stella-jniwrap", "wrap_init")
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # a C function of the library keeps its answer
