"""psycopg imported without importlib.metadata (store/psycopg_import.py, issue 13).

The stand-ins for psycopg's and psycopg-binary's ``version`` modules are right only while those
modules do nothing but read their distribution's version: the first test pins that, on the
installed files, so an upgrade that changes them fails here instead of silently. The others run
the loader in a fresh interpreter (this process has imported everything): the same versions as
``importlib.metadata`` gives, the same package layout, the fallback when the version is not
unambiguous, and the store opening a real PostgreSQL without ``importlib.metadata``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from importlib import metadata, util
from pathlib import Path

import pytest

from stellaops_runtime.store import psycopg_import

# What only importlib.metadata brings in on the store's path (~1.6 MB of the idle agent).
METADATA_ONLY = ("importlib.metadata", "email", "email.parser", "zipfile", "csv", "importlib.resources")


@pytest.mark.parametrize(("package", "dist"), psycopg_import.PACKAGES)
def test_each_version_module_only_reads_its_distributions_version(package: str, dist: str) -> None:
    spec = util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    source = Path(next(iter(spec.submodule_search_locations)), "version.py").read_text()
    tree = ast.parse(source)
    bound: set[str] = set()
    calls: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module, [a.name for a in node.names]) == ("importlib", ["metadata"])
            bound.add("metadata")
        elif isinstance(node, ast.Import):
            raise AssertionError(f"{package}/version.py imports {[a.name for a in node.names]}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "metadata.version":
            calls.append(ast.literal_eval(node.args[0]))
    assert bound == {"metadata", "__version__"}
    assert [psycopg_import._normal(c) for c in calls] == [dist]


def _run(code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_psycopg_loads_without_importlib_metadata_and_with_its_versions() -> None:
    out = _run(
        """
        import json, sys
        from stellaops_runtime.store import psycopg_import
        psycopg = psycopg_import.load()
        binary = sys.modules["psycopg_binary"]
        modules = sorted(sys.modules)
        import psycopg.version, psycopg_binary.version  # as another importer would: the same modules
        print(json.dumps({
            "modules": modules,
            "versions": [psycopg.__version__, binary.__version__],
            "impl": psycopg.pq.__impl__,
            "layout": [psycopg.version is sys.modules["psycopg.version"],
                       binary.version is sys.modules["psycopg_binary.version"],
                       psycopg.__version__ == psycopg.version.__version__],
            "again": psycopg_import.load() is psycopg,
        }))
        """
    )
    assert sorted(m for m in METADATA_ONLY if m in out["modules"]) == []
    assert out["versions"] == [metadata.version("psycopg"), metadata.version("psycopg-binary")]
    assert out["impl"] == "binary" and out["layout"] == [True, True, True] and out["again"]


def test_a_version_not_read_unambiguously_leaves_psycopgs_own_import() -> None:
    out = _run(
        """
        import json, sys
        from stellaops_runtime.store import psycopg_import
        psycopg_import.dist_version = lambda site, dist: None  # as with no or two dist-infos
        psycopg = psycopg_import.load()
        print(json.dumps({"metadata": "importlib.metadata" in sys.modules, "version": psycopg.__version__}))
        """
    )
    assert out == {"metadata": True, "version": metadata.version("psycopg")}


def _dist(site: Path, name: str, metadata_text: str | None) -> None:
    info = site / f"{name}.dist-info"
    info.mkdir()
    if metadata_text is not None:
        (info / "METADATA").write_bytes(metadata_text.encode())


def test_dist_version_reads_only_one_unambiguous_header(tmp_path: Path) -> None:
    head = "Metadata-Version: 2.1\nName: psycopg\n"
    cases: dict[str, tuple[list[tuple[str, str | None]], str | None]] = {
        "one": ([("psycopg-3.3.9", head + "Version: 3.3.9\n\nVersion: 9\n")], "3.3.9"),
        "crlf": ([("psycopg-3.3.9", (head + "Version: 3.3.9\n\n").replace("\n", "\r\n"))], "3.3.9"),
        "other names": (
            [("psycopg-3.3.9", head + "Version: 3.3.9\n"), ("psycopg_pool-3.2", "Version: 3.2\n")],
            "3.3.9",
        ),
        "none": ([("psycopg_pool-3.2", "Version: 3.2\n")], None),
        "two": (
            [("psycopg-3.3.9", head + "Version: 3.3.9\n"), ("psycopg-3.1", head + "Version: 3.1\n")],
            None,
        ),
        "no METADATA": ([("psycopg-3.3.9", None)], None),
        "only in the body": ([("psycopg-3.3.9", head + "\nVersion: 3.3.9\n")], None),
        "empty version": ([("psycopg-3.3.9", head + "Version:\n")], None),
    }
    for case, (dists, want) in cases.items():
        site = tmp_path / case.replace(" ", "_")
        site.mkdir()
        for name, text in dists:
            _dist(site, name, text)
        assert psycopg_import.dist_version(str(site), "psycopg") == want, case
    assert psycopg_import.dist_version(str(tmp_path / "missing"), "psycopg") is None
    binary = tmp_path / "binary"
    binary.mkdir()
    _dist(binary, "psycopg_binary-3.3.9", "Name: psycopg-binary\nVersion: 3.3.9\n")
    assert psycopg_import.dist_version(str(binary), "psycopg_binary") == "3.3.9"
    assert psycopg_import.dist_version(str(binary), "psycopg") is None


@pytest.mark.postgres
def test_the_store_opens_postgresql_without_importlib_metadata(pg_url: str) -> None:
    out = _run(
        """
        import json, sys
        from stellaops_runtime.store.dbconn import Database
        from stellaops_runtime.store.store_url import parse_store_url
        db = Database(parse_store_url(sys.argv[1]))
        with db.connect() as conn:
            rows = conn.execute("SELECT 41 + 1").rows
        print(json.dumps({"rows": rows, "modules": sorted(sys.modules)}))
        """,
        # A keyword the agent's own client does not speak: the store's connections are psycopg's.
        f"{pg_url}?target_session_attrs=read-write",
    )
    assert out["rows"] == [[42]]
    assert "psycopg" in out["modules"]
    assert sorted(m for m in METADATA_ONLY if m in out["modules"]) == []
