"""native/purl_wiring.PurlWiring.probed: a file's package only when every container of the image agrees.

Each container's probe report names the package its OWN database gives the probed file, and a
container can rewrite that database. The row the agent stores counts every container of the image,
and agent/purls.py takes ``probed`` before anything else: before, the last report read won, so a
container whose forged dpkg status claimed zlib1g 1:1.3.1 (fixed) gave the image's row that
version while the victim container ran the vulnerable 1:1.2.13.
"""

from __future__ import annotations

from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.purl_wiring import PurlWiring

LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
D = "sha256:" + "ab" * 32
E = "sha256:" + "cd" * 32


def report(container: str, *versions: str) -> pt.FunctionReport:
    packages = [f"pkg:deb/debian/zlib1g@{v}?arch=amd64" for v in versions]
    r = pt.FunctionReport(container=container, pid=1, purl="pkg:deb/debian/zlib1g", symbol="inflate",
                          status=pt.ATTACHED, packages=packages)  # fmt: skip
    f = pt.FunctionFile.__new__(pt.FunctionFile)
    object.__setattr__(f, "path", LIBZ)
    r.files = [f]
    return r


def probed(*reports: pt.FunctionReport, digests: dict[str, str]) -> dict[tuple[str, str], str]:
    w = PurlWiring.__new__(PurlWiring)
    w._reports = {("p", "pkg:deb/debian/zlib1g", "inflate"): list(reports)}
    return w.probed(digests)


def test_containers_of_one_image_that_disagree_name_no_package() -> None:
    digests = {"victim": D, "attacker": D, "other": E}
    for order in ((report("victim", "1:1.2.13"), report("attacker", "1:1.3.1")),
                  (report("attacker", "1:1.3.1"), report("victim", "1:1.2.13"))):  # fmt: skip
        assert probed(*order, report("other", "1:1.3.1"), digests=digests) == {
            (E, LIBZ): "pkg:deb/debian/zlib1g@1:1.3.1?arch=amd64"  # another image: its own answer
        }


def test_containers_that_agree_name_the_package_and_an_ambiguous_one_names_none() -> None:
    digests = {"a": D, "b": D}
    assert probed(report("a", "1:1.2.13"), report("b", "1:1.2.13"), digests=digests) == {
        (D, LIBZ): "pkg:deb/debian/zlib1g@1:1.2.13?arch=amd64"
    }
    assert probed(report("a", "1:1.2.13"), report("b", "1:1.2.13", "1:1.3.1"), digests=digests) == {}
