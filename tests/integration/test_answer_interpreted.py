"""A function of an interpreted package is never "not called" on the strength of sampled stacks.

A sampled user stack names native frames only: in a Python, Node.js or Ruby process the
package's own functions run inside the interpreter (``_PyEval_EvalFrameDefault``, V8's JIT code)
and no frame is ever named ``yaml.full_load``. A wheel with a C extension (PyYAML's ``_yaml.so``)
is "seen loaded" through that file, so before the fix an image watched 40 days at EbpfDeep gave
``vex`` ``not_affected`` (vulnerable_code_not_in_execute_path), ``evidence`` PotentiallyReachable
with RTS 0.20 "long window" (exit 1) and ``query observed --purl`` "not observed" (exit 1) for a
Python function nothing could have seen. Now they say under_investigation / unknown (exit 3),
RTS 0.50, and why. A call seen through Python's USDT probe is still ``affected``, and a function
asked by function ID (an ELF symbol of the package's native file) keeps its "not called".
The real CLI's own entry point in this process (tests/cli_run.py ``cli_in_process``), real writer,
SQLite (the doubt reads no table).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import DAY, IMG, OPENVEX, T0, S, by_vuln, vex_cli, watched

BID = "ab" * 20
CASES = {
    "pypi": ("/usr/lib/python3/dist-packages/_yaml.cpython-311-x86_64-linux-gnu.so",
             "pkg:pypi/pyyaml@6.0.1", "pkg:pypi/pyyaml", "yaml.full_load"),
    "npm": ("/app/node_modules/bcrypt/lib/binding/napi-v3/bcrypt_lib.node",
            "pkg:npm/bcrypt@5.1.0", "pkg:npm/bcrypt", "compare"),
    "gem": ("/usr/local/bundle/gems/nokogiri-1.15.0/lib/nokogiri/nokogiri.so",
            "pkg:gem/nokogiri@1.15.0", "pkg:gem/nokogiri", "Nokogiri::XML::Document.parse"),
    # A distribution's package of Python modules: interpreted code too, known by where its files lie.
    "deb": ("/usr/lib/python3/dist-packages/_yaml.cpython-311-x86_64-linux-gnu.so",
            "pkg:deb/debian/python3-yaml@6.0-3?arch=amd64", "pkg:deb/debian/python3-yaml", "yaml.full_load"),
    "conda": ("/opt/conda/lib/python3.11/site-packages/_yaml.cpython-311-x86_64-linux-gnu.so",
              "pkg:conda/pyyaml@6.0.1", "pkg:conda/pyyaml", "yaml.full_load"),
    # Missed before (s42/NO3, seen failing: not_affected): Debian's R package (its R functions run
    # in R) under site-library, Alpine's PHP extension under /usr/lib/php82.
    "rdeb": ("/usr/lib/R/site-library/xml2/libs/xml2.so",
             "pkg:deb/debian/r-cran-xml2@1.3.6-1?arch=amd64", "pkg:deb/debian/r-cran-xml2", "read_xml"),
    "phpapk": ("/usr/lib/php82/modules/yaml.so",
               "pkg:apk/alpine/php82-pecl-yaml@2.2.3-r1?arch=x86_64", "pkg:apk/alpine/php82-pecl-yaml",
               "yaml_parse"),
    # Missed before (review RNO3, seen failing: not_affected): thread-safe PHP's extension directory
    # (FrankenPHP's php-zts packages, Fedora's and Remi's %{_libdir}/php-zts/modules).
    "phpzts": ("/usr/lib/php-zts/modules/apcu.so",
               "pkg:deb/debian/php-zts-apcu@5.1.24-1?arch=amd64", "pkg:deb/debian/php-zts-apcu",
               "apcu_fetch"),
}  # fmt: skip
ZLIB = ("/usr/lib/x86_64-linux-gnu/libz.so.1", "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64")


def row(
    module: str, fn: str, kind: EvidenceKind, purl: str, *, day: int = 0, bid: str = ""
) -> HotSymbolDelta:
    start = T0 + day * DAY
    key = HotSymbolKey(IMG, module, fn, kind)
    return HotSymbolDelta(
        key, start, 3, start + S, start + 2 * S, purl=purl, node_name="node-1", build_id=bid
    )


def filled(tmp: Path | str, *rows: HotSymbolDelta) -> str:
    """A store at ``tmp`` (a store URL, or a directory for a SQLite file) holding ``rows``."""
    url = tmp if isinstance(tmp, str) else f"sqlite:///{tmp}/hot.db"
    with open_store(url) as s:
        s.write(list(rows), watched())  # 40 days at EbpfDeep, gap-free
    return url


def ask(tmp: Path, url: str, query: str, fn: str) -> tuple[str, str, int, dict, int, dict]:  # type: ignore[type-arg]
    """(vex status, its note, evidence exit, its document, query observed --purl exit, its document)."""
    vulns = {"vulnerabilities": [{"id": "CVE-I", "affected": [{"purl": query, "functions": [fn]}]}]}
    r = vex_cli(tmp, url, vulns)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    st = by_vuln(doc)["CVE-I"]
    argv = ("--image", IMG, "--purl", query, "--function", fn)
    e, edoc = cli(url, "evidence", *argv)
    q, qdoc = cli(url, "query", "observed", *argv)
    return st["status"], st["status_notes"], e, edoc, q, qdoc


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_function_of_an_interpreted_package_not_seen_is_unknown(tmp_path: Path, kind: str) -> None:
    module, stored, query, fn = CASES[kind]
    url = filled(tmp_path, row(module, "", EvidenceKind.LOADED, stored, bid=BID))
    status, note, e, edoc, q, qdoc = ask(tmp_path, url, query, fn)
    assert status == "under_investigation", note
    assert "no sampled stack names" in note and (f"{kind} package" in note or module in note)
    assert e == 3 and edoc["rts"]["score"] == 0.5 and edoc["reachability_state"] == "PotentiallyReachable"
    assert "no sampled stack names" in edoc["reason"] and "no sampled stack names" in edoc["rts"]["scenario"]
    assert q == 3 and qdoc["answer"] == "unknown" and qdoc["interpreted"] == []


def test_a_python_call_seen_through_usdt_is_still_affected(tmp_path: Path) -> None:
    py = "/usr/lib/python3/dist-packages/yaml/__init__.py"
    module, stored, query, _fn = CASES["pypi"]
    url = filled(
        tmp_path,
        row(module, "", EvidenceKind.LOADED, stored, bid=BID),
        row(py, "full_load", EvidenceKind.INVOKED, stored, day=5),
    )
    status, _note, e, edoc, q, _ = ask(tmp_path, url, query, "full_load")
    assert (status, e, q, edoc["data"]["invocation_count"]) == ("affected", 0, 0, 3)


def test_a_native_function_asked_by_its_id_keeps_its_answer(tmp_path: Path) -> None:
    module, stored, query, _fn = CASES["pypi"]
    url = filled(tmp_path, row(module, "", EvidenceKind.LOADED, stored, bid=BID))
    status, note, e, edoc, q, _ = ask(tmp_path, url, query, f"{BID}:yaml_parser_parse+0x0")
    assert status == "not_affected", note
    assert (e, q, edoc["rts"]["score"]) == (1, 1, 0.2)


def test_query_functions_of_an_interpreted_package_with_none_listed_is_unknown(tmp_path: Path) -> None:
    module, stored, query, _fn = CASES["pypi"]
    url = filled(tmp_path, row(module, "", EvidenceKind.LOADED, stored, bid=BID))
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", query)
    assert (code, doc["answer"], doc["interpreted"]) == (3, "unknown", [])
    assert "no sampled stack names" in doc["reason"]
    (tmp_path / "z").mkdir()
    url = filled(tmp_path / "z", row(*ZLIB[:1], "", EvidenceKind.LOADED, ZLIB[1]))
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_a_name_asked_of_no_package_or_a_prefix_in_an_image_running_python_is_unknown(
    tmp_path: Path, url: str
) -> None:
    """Without --purl the name may be a function of any package of the image, a Python one too; a
    --prefix may cover an interpreted package (pkg:pypi/, or a deb of Python modules). SQLite and
    PostgreSQL (the image without interpreted code: SQLite)."""
    deb = CASES["deb"]
    filled(
        url,
        row(ZLIB[0], "", EvidenceKind.LOADED, ZLIB[1]),
        row(deb[0], "", EvidenceKind.LOADED, deb[1], bid=BID),
    )
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "yaml.full_load")
    assert (code, doc["answer"], doc["interpreted"]) == (3, "unknown", []), doc
    assert deb[0] in doc["reason"]
    for prefix in ("pkg:deb/debian/", "pkg:deb/debian/python3-", "pkg:pypi/"):
        code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", prefix, "--prefix")
        assert (code, doc["answer"]) == (3, "unknown"), (prefix, doc)
    # An image with no interpreted code keeps its "not observed", by name and by prefix.
    (tmp_path / "n").mkdir()
    url = filled(tmp_path / "n", row(ZLIB[0], "", EvidenceKind.LOADED, ZLIB[1]))
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "inflateGetHeader")
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/", "--prefix")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_a_package_the_store_knows_nothing_of_is_no_not_observed(url: str) -> None:
    """A mistyped purl (zlibg1), or a package not in the image: no row of it, so no "no".
    SQLite and PostgreSQL."""
    filled(url, row(ZLIB[0], "", EvidenceKind.LOADED, ZLIB[1]))
    argv = ("--image", IMG, "--function", "crc32")
    code, doc = cli(url, "query", "observed", *argv, "--purl", "pkg:deb/debian/zlibg1")
    assert (code, doc["answer"], doc["package_not_seen"]) == (3, "unknown", []), doc
    assert "never seen loaded" in doc["reason"]
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlibg1")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debain/", "--prefix")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    code, doc = cli(url, "query", "observed", *argv, "--purl", "pkg:deb/debian/zlib1g")
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    # The version without its epoch (stored 1:1.2.13.dfsg-1) is another version: unknown, and the
    # reason names what is stored of the package.
    code, doc = cli(url, "query", "observed", *argv, "--purl", "pkg:deb/debian/zlib1g@1.2.13.dfsg-1")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert ZLIB[1] in doc["reason"]


def test_a_function_id_of_a_file_the_image_never_loaded_is_no_not_called(tmp_path: Path, url: str) -> None:
    """A function ID names one build of a file: asked with a build-id no stored row of the image has
    (a mistyped one, another build of the library than the image holds), the store knows nothing of
    that code, so no "not observed", no not_affected, no RTS 0.20. SQLite and PostgreSQL."""
    filled(url, row(ZLIB[0], "", EvidenceKind.LOADED, ZLIB[1], bid=BID))
    other = "cd" * 20
    argv = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", f"{other}:inflateGetHeader+0x0")
    code, doc = cli(url, "query", "observed", *argv)
    assert (code, doc["answer"], doc["file_not_seen"]) == (3, "unknown", []), doc
    assert other in doc["reason"]
    code, doc = cli(url, "evidence", *argv)
    assert (code, doc["rts"]["score"]) == (3, 0.5), doc
    vulns = {"vulnerabilities": [{"id": "CVE-B", "affected": [
        {"purl": "pkg:deb/debian/zlib1g", "functions": [f"{other}:inflateGetHeader+0x0"]}]}]}  # fmt: skip
    r = vex_cli(tmp_path, url, vulns)
    assert r.returncode == 0, r.stderr
    assert by_vuln(json.loads(r.stdout))["CVE-B"]["status"] == "under_investigation"
    # The build the image holds keeps its "not called".
    mine = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", f"{BID}:inflateGetHeader+0x0")
    code, doc = cli(url, "query", "observed", *mine)
    assert (code, doc["answer"]) == (1, "not_observed"), doc
