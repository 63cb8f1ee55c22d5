"""Which Go module a function of a Go binary is filed under (function_packages.py).

A module-mode binary's build info lists every module compiled in, the main one
included, so a function whose dotted package path is in none of them is not the
main module's: before, it fell back to the file's answer (the main module), and
"is the main module's code executed" counted a function that is not its code.
It is unknown (``scope="function"``, reason named, counted ambiguous). A
GOPATH-mode binary (Debian's containerd: no ``mod`` line) keeps the file's answer,
as do linker-generated names (``go.buildid``) and the standard library.
"""

from __future__ import annotations

from stellaops_runtime.attribution import gobuildinfo
from stellaops_runtime.attribution.binaries import BinaryInfo
from stellaops_runtime.attribution.counters import AttributionCounters
from stellaops_runtime.attribution.function_packages import function_package
from stellaops_runtime.attribution.model import Attribution

MODULES = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgopkg.in/yaml.v3\tv3.0.1\th1:x=\n"
APP = "/usr/bin/app"


def _ask(modinfo: str, function: str) -> tuple[Attribution, int]:
    info = BinaryInfo(go=gobuildinfo.parse_modinfo("go1.22.1", modinfo))
    file_att = Attribution(APP, "pkg:golang/example.com/app", "gomod", evidence="buildinfo", resolved=APP)
    counters = AttributionCounters()
    return function_package(APP, file_att, info, function, counters), counters.ambiguous


def test_a_dotted_package_in_no_module_of_a_module_build_is_unknown() -> None:
    for function in ("example.com/unlisted.F", "github.com/other/lib.(*T).M", "gopkg.in/yaml%2ev4.Unmarshal"):
        a, ambiguous = _ask(MODULES, function)
        assert (a.purl, a.source, a.scope) == (None, "none", "function"), (function, a.purl)
        assert a.error is not None and "no module of the build info" in a.error, a.error
        assert ambiguous == 1


def test_listed_modules_the_standard_library_and_linker_names_keep_their_answers() -> None:
    expect = {
        "gopkg.in/yaml%2ev3.Unmarshal": ("pkg:golang/gopkg.in/yaml.v3@v3.0.1", "function"),
        "example.com/app/internal/x.F": ("pkg:golang/example.com/app", "function"),
        "main.main": ("pkg:golang/example.com/app", "function"),
        "fmt.Println": ("pkg:golang/stdlib@1.22.1", "function"),
        "go.buildid": ("pkg:golang/example.com/app", "file"),
        "type:.eq.example.com/unlisted.T": ("pkg:golang/example.com/app", "file"),
    }
    for function, want in expect.items():
        a, ambiguous = _ask(MODULES, function)
        assert ((a.purl, a.scope), ambiguous) == (want, 0), function


def test_a_gopath_binary_keeps_the_file_s_answer() -> None:
    a, ambiguous = _ask(
        "path\tgithub.com/containerd/containerd/cmd/containerd\n", "github.com/containerd/x.F"
    )
    assert ((a.purl, a.scope), ambiguous) == (("pkg:golang/example.com/app", "file"), 0)
