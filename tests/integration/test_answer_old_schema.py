"""A store from before the schema the answers read, or missing one of its tables, says so.

Reading never migrates (cli/store_access.py). A store at migration 0001 (before function IDs)
made every question fail with the database's own words, ``cannot query store …: no such
column: main.hot_symbols.function_id`` (PostgreSQL: ``column hot_symbols.function_id does not
exist``), and a store missing ``observation_windows`` with ``cannot query store …:
observation_windows``: exit 2 as it should be, but nothing told the user the store was old or
incomplete and what to do. Now: one line naming what is missing and that the agent migrates
it. A store at 0002 still answers (posture unknown: no "not observed").
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from stellaops_runtime.store.engine import create_store_engine, migrate
from tests.integration.test_vex import IMG, ROOT

QUESTIONS = [
    ("query", "observed", "--image", IMG, "--function", "crc32"),
    ("query", "hot", "--image", IMG),
    ("query", "images"),
    ("evidence", "--image", IMG, "--function", "crc32", "--purl", "pkg:deb/debian/zlib1g"),
]


@pytest.fixture
def url(empty_url: str) -> str:
    """Never migrated (tests/integration/conftest.py): these tests migrate it to the revision they test."""
    return empty_url


def cli(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *argv, "--store", url],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    return r


def at(url: str, revision: str) -> str:
    engine = create_store_engine(url)
    try:
        migrate(engine, revision=revision)
    finally:
        engine.dispose()
    return url


@pytest.mark.parametrize("argv", QUESTIONS, ids=[" ".join(q[:2]) for q in QUESTIONS])
def test_a_store_before_function_ids_says_it_is_old(url: str, argv: tuple[str, ...]) -> None:
    r = cli(at(url, "0001"), *argv)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    [line] = r.stderr.strip().splitlines()
    assert "older schema or incomplete" in line and "function_id" in line and "migrate" in line, line


def test_a_store_missing_a_table_says_which(url: str) -> None:
    at(url, "head")
    engine = create_store_engine(url)
    with engine.begin() as conn:
        schema = "signals." if conn.dialect.name == "postgresql" else ""
        conn.execute(sa.text(f"DROP TABLE {schema}observation_windows"))
    engine.dispose()
    r = cli(url, *QUESTIONS[0])
    assert r.returncode == 2 and "no observation_windows" in r.stderr, r.stderr


def test_a_store_at_0002_still_answers(url: str) -> None:
    r = cli(at(url, "0002"), *QUESTIONS[0])
    assert r.returncode == 3 and r.stdout.startswith("unknown:"), (r.stdout, r.stderr)
