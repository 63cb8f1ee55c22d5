"""store.createDirectories: a SQLite store in a missing directory is a permanent configuration error."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellaops_runtime.contracts.config import ConfigError, parse_config
from stellaops_runtime.store.engine import (
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    open_store,
    prepare_sqlite_directory,
)


def test_the_key_defaults_to_false() -> None:
    assert parse_config({}).store.create_directories is False
    assert parse_config({"store": {"createDirectories": True}}).store.create_directories is True


def test_missing_directory_is_a_config_error_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    url = f"sqlite:///{missing}/hot.db"
    with pytest.raises(StoreConfigError) as e:
        open_store(url)
    assert str(e.value) == (
        f"store.url {url}: directory {missing} does not exist "
        "(create it, or set store.createDirectories: true to let the agent create it)"
    )
    assert "\n" not in str(e.value)
    assert isinstance(e.value, StoreError) and not isinstance(e.value, StoreUnavailable)
    assert not (tmp_path / "no").exists()
    with pytest.raises(StoreConfigError, match="does not exist"):
        open_store(url, migrate=False)  # without migrations too: never a later "unavailable"


def test_create_directories_makes_the_tree_and_the_store_works(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "hot.db"
    store = open_store(f"sqlite:///{db}", create_directories=True)
    try:
        assert db.is_file()
        assert store.read_hot_symbols() == []
    finally:
        store.close()


def test_existing_directory_needs_nothing(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/hot.db")
    store.close()
    assert (tmp_path / "hot.db").is_file()


def test_relative_path_is_checked_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prepare_sqlite_directory("sqlite:///hot.db")  # the working directory exists
    with pytest.raises(StoreConfigError) as e:
        prepare_sqlite_directory("sqlite:///data/hot.db")
    assert f"directory {tmp_path / 'data'} does not exist" in str(e.value)


def test_parent_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for create in (False, True):
        with pytest.raises(StoreConfigError) as e:
            prepare_sqlite_directory(f"sqlite:///{tmp_path}/f/hot.db", create=create)
        assert str(e.value) == f"store.url sqlite:///{tmp_path}/f/hot.db: {tmp_path / 'f'} is not a directory"


def test_directory_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")  # a file where a directory of the path should be
    url = f"sqlite:///{tmp_path}/f/x/y/hot.db"
    with pytest.raises(StoreConfigError) as e:
        prepare_sqlite_directory(url, create=True)
    assert str(e.value) == (
        f"store.url {url}: cannot create directory {tmp_path / 'f' / 'x' / 'y'} "
        "(store.createDirectories): Not a directory"
    )
    with pytest.raises(StoreConfigError, match="does not exist"):
        prepare_sqlite_directory(url)


def test_postgres_and_in_memory_urls_are_not_paths() -> None:
    prepare_sqlite_directory("postgresql://u:pw@127.0.0.1:1/db")
    prepare_sqlite_directory("sqlite://")
    prepare_sqlite_directory("sqlite:///:memory:")


def test_messages_never_show_a_password(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError) as e:
        prepare_sqlite_directory(f"sqlite://user:hunter2@/{tmp_path}/missing/hot.db")
    assert "hunter2" not in str(e.value) and "***" in str(e.value)
    with pytest.raises(StoreConfigError) as e2:
        open_store("mysql://user:hunter2@db/x")
    assert "hunter2" not in str(e2.value) and "unsupported store URL" in str(e2.value)
    with pytest.raises(ConfigError) as e3:
        parse_config({"store": {"url": "mysql://bob:hunter2@db:3306/x"}})
    assert str(e3.value) == (
        "invalid configuration:\n  store.url: expected an SQLAlchemy URL "
        "(sqlite:///... or postgresql+psycopg://...), got 'mysql://bob:***@db:3306/x'"
    )
